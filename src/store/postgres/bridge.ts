/**
 * A synchronous PostgreSQL connection for units of work. The storage contract's units are
 * synchronous (src/store/contract.ts), as bun:sqlite is; a PostgreSQL round trip is not. So the
 * committer's connection lives on a worker thread (./bridge-worker.ts) and the event loop waits for
 * each answer with Atomics.wait, as bun:sqlite waits for the disk. Statements whose result nobody
 * reads are deferred and sent with the next statement that is read (or the COMMIT): one round trip
 * for many writes. docs/architecture.md#storage-contract-and-postgresql.
 */
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import { workerPath } from "../../core/worker-path.ts";

export interface BridgeOp {
  text: string;
  params: readonly unknown[];
}

export interface BridgeRequest {
  ops: BridgeOp[];
}

export interface BridgeReply {
  /** One row list per statement that ran, in order. */
  results: unknown[][];
  error: { index: number; message: string; code: string | null } | null;
}

/** A statement PostgreSQL refused; `code` is its SQLSTATE (23505: unique violation). */
export class PgError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
    /** The failing statement was a deferred one, not the one being read. */
    readonly deferred = false,
  ) {
    super(message);
    this.name = "PgError";
  }
}

const WORKER_URL = workerPath("store/postgres/bridge-worker.ts");

/** How long the event loop waits for one answer before calling the database gone. */
const ANSWER_TIMEOUT_MS = 60_000;

/** The rows of a statement sent later (deferRead): filled in once it has run. */
export interface LaterRows<T> {
  rows: T[] | null;
}

export class SyncConnection {
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private readonly port: MessagePort;
  private readonly worker: Worker;
  private deferred: BridgeOp[] = [];
  /** Where the rows of deferred statements go, by their index in `deferred` (deferRead). */
  private into = new Map<number, LaterRows<unknown>>();
  private closed = false;

  constructor(url: string, connection: Record<string, string>) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1 as unknown as MessagePort;
    this.worker = new Worker(WORKER_URL, {
      workerData: { url, flag: this.flag, port: port2, connection },
      transferList: [port2 as never],
    });
    this.worker.unref();
    (this.port as unknown as { unref(): void }).unref();
  }

  /** Run `text` now (after whatever was deferred) and return its rows. */
  query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): T[] {
    const ops = this.deferred;
    this.deferred = [];
    ops.push({ text, params });
    const results = this.send(ops);
    return results[results.length - 1] as T[];
  }

  /** Run `text` with the next statement that is read; its failure surfaces there. */
  defer(text: string, params: readonly unknown[] = []): void {
    this.deferred.push({ text, params });
  }

  /**
   * Run `text` with the next statement that is read, like defer, and keep its rows: for a unit
   * whose caller reads them only after the commit (they travel with the COMMIT, one round trip).
   */
  deferRead<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): LaterRows<T> {
    const later: LaterRows<T> = { rows: null };
    this.into.set(this.deferred.length, later as LaterRows<unknown>);
    this.deferred.push({ text, params });
    return later;
  }

  /** Send what was deferred; throws the first failure among it. */
  flush(): void {
    if (this.deferred.length === 0) return;
    const ops = this.deferred;
    this.deferred = [];
    this.send(ops);
  }

  /** Forget what was deferred (the transaction is being rolled back). */
  discard(): void {
    this.deferred = [];
    this.into.clear();
  }

  private send(ops: BridgeOp[]): unknown[][] {
    const into = this.into;
    if (into.size > 0) this.into = new Map();
    const results = this.exchange(ops);
    for (const [i, later] of into) later.rows = results[i] ?? null;
    return results;
  }

  private exchange(ops: BridgeOp[]): unknown[][] {
    if (this.closed) throw new PgError("the database connection is closed", null);
    this.port.postMessage({ ops } satisfies BridgeRequest);
    const deadline = performance.now() + ANSWER_TIMEOUT_MS;
    for (;;) {
      // Read the counter before looking for the answer: the worker posts, then counts, so an
      // answer that arrives after the look changes the counter and the wait returns at once.
      const seen = Atomics.load(this.flag, 0);
      const got = receiveMessageOnPort(this.port as never) as { message: BridgeReply } | undefined;
      if (got) {
        const { results, error } = got.message;
        if (error) throw new PgError(error.message, error.code, error.index < ops.length - 1);
        return results;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new PgError(`no answer from PostgreSQL within ${ANSWER_TIMEOUT_MS / 1000} s`, null);
      Atomics.wait(this.flag, 0, seen, left);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => {
      this.worker.once("message", () => resolve());
      this.worker.once("exit", () => resolve());
    });
    this.worker.postMessage("close");
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    await this.worker.terminate();
  }
}
