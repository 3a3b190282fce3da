import type { Clock } from "../../core/clock.ts";
import { AppError, fromStorageError } from "../../errors/index.ts";
import type {
  Committer,
  CommitterStats,
  EnqueueResult,
  JobSpec,
  LeaseRef,
  OutboxEvent,
  Tx as ContractTx,
} from "../contract.ts";
import { PgError, type SyncConnection } from "./bridge.ts";

/** A unit of work on PostgreSQL: the contract's operations plus the synchronous connection of the open transaction. */
export interface PgTx extends ContractTx {
  readonly conn: SyncConnection;
  /** Take a transaction-level advisory lock once per transaction (serialized appends: the outbox, the audit chain). */
  lock(key: number): void;
  /** True the first time `tag` is asked in this transaction (a NOTIFY per transaction, not per unit). */
  once(tag: string): boolean;
}

export interface PgCommitterOptions {
  windowMs: number;
  maxBatch: number;
  clock: Clock;
  onCommit?: (units: number, seconds: number, ok: boolean) => void;
}

export interface PgTxOperations {
  enqueue(tx: PgTx, spec: JobSpec): EnqueueResult;
  ack(tx: PgTx, lease: LeaseRef): boolean;
  emit(tx: PgTx, event: OutboxEvent): string;
}

const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000];

interface Pending {
  work: (tx: PgTx) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** What one try at a batch's transaction shares: the advisory locks it already holds. */
interface BatchState {
  locks: Set<number>;
  once: Set<string>;
}

class Tx implements PgTx {
  hooks: Set<() => void> | null = null;
  constructor(
    readonly conn: SyncConnection,
    readonly now: number,
    private readonly ops: PgTxOperations,
    private readonly batch: BatchState,
  ) {}
  enqueue(spec: JobSpec): EnqueueResult {
    return this.ops.enqueue(this, spec);
  }
  ack(lease: LeaseRef): boolean {
    return this.ops.ack(this, lease);
  }
  emit(event: OutboxEvent): string {
    return this.ops.emit(this, event);
  }
  afterCommit(fn: () => void): void {
    (this.hooks ??= new Set()).add(fn);
  }
  lock(key: number): void {
    if (this.batch.locks.has(key)) return;
    this.conn.defer("SELECT pg_advisory_xact_lock($1)", [key]);
    this.batch.locks.add(key);
  }
  once(tag: string): boolean {
    if (this.batch.once.has(tag)) return false;
    this.batch.once.add(tag);
    return true;
  }
}

const unbound: PgTxOperations = {
  enqueue: () => {
    throw new Error("committer has no queue bound");
  },
  ack: () => {
    throw new Error("committer has no queue bound");
  },
  emit: () => {
    throw new Error("committer has no outbox bound");
  },
};

/**
 * Group commit on PostgreSQL, the same algorithm as src/store/sqlite/committer.ts: the units that
 * arrive during one event-loop turn share one `BEGIN … COMMIT` (synchronous_commit=on: one WAL
 * flush on the server for all of them), a failing unit is isolated by running the batch again with
 * a SAVEPOINT around each unit, and every caller is answered after COMMIT returned.
 *
 * Units stay synchronous: their statements go over a connection owned by a worker thread, and the
 * event loop waits for each answer (./bridge.ts). Writes whose result a unit does not read are
 * deferred and travel with the next read or with the COMMIT, so a batch of inserts costs one round
 * trip; a deferred write that fails surfaces there, and the optimistic run then becomes the
 * isolated one, in which each unit's writes are flushed before its savepoint is released (so the
 * failure is charged to the unit that wrote it).
 */
export class PgCommitter implements Committer<PgTx> {
  private pending: Pending[] = [];
  private scheduled = false;
  private closed = false;
  private ops: PgTxOperations = unbound;
  private readonly statsData: CommitterStats = { commits: 0, units: 0, failedCommits: 0, batchSizes: new Map() };

  constructor(
    private readonly conn: SyncConnection,
    private readonly opts: PgCommitterOptions,
  ) {}

  bind(ops: PgTxOperations): void {
    this.ops = ops;
  }

  run<T>(work: (tx: PgTx) => T): Promise<T> {
    if (this.closed) return Promise.reject(new AppError("unavailable", "shutting down", { retryAfter: 5 }));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (v: unknown) => void, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const flush = (): void => {
      this.scheduled = false;
      this.flush();
    };
    if (this.pending.length >= this.opts.maxBatch || this.opts.windowMs <= 0) setImmediate(flush);
    else setTimeout(flush, this.opts.windowMs);
  }

  flush(): void {
    while (this.pending.length > 0) this.commitBatch(this.pending.splice(0, this.opts.maxBatch));
  }

  private commitBatch(batch: Pending[]): void {
    const started = performance.now();
    let attempt = this.execute(batch, false);
    if (attempt.kind === "unit-failed") attempt = this.execute(batch, true);
    if (attempt.kind !== "ok") {
      this.record(batch.length, started, false);
      const err = fromStorageError(attempt.kind === "storage-failed" ? attempt.error : null, "committing");
      for (const item of batch) item.reject(err);
      return;
    }
    this.record(batch.length, started, true);
    const { outcomes, hooks } = attempt;
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      if (o.ok) batch[i]!.resolve(o.value);
      else batch[i]!.reject(o.value);
    }
    for (const hook of hooks) {
      try {
        hook();
      } catch {
        // A notification hook must not undo a commit that already happened.
      }
    }
  }

  private execute(
    batch: Pending[],
    isolate: boolean,
  ):
    | { kind: "ok"; outcomes: { ok: boolean; value: unknown }[]; hooks: Set<() => void> }
    | { kind: "unit-failed" }
    | { kind: "storage-failed"; error: unknown } {
    const { conn } = this;
    conn.discard();
    conn.defer("BEGIN");
    const now = this.opts.clock.now();
    const state: BatchState = { locks: new Set(), once: new Set() };
    const outcomes: { ok: boolean; value: unknown }[] = [];
    const hooks = new Set<() => void>();
    for (const item of batch) {
      const tx = new Tx(conn, now, this.ops, state);
      // What a unit rolled back to its savepoint did not do (its NOTIFY is gone with it).
      const onceBefore = isolate ? new Set(state.once) : null;
      // A lock statement the unit deferred and never sent is discarded with it: take it again later.
      const locksBefore = isolate ? new Set(state.locks) : null;
      if (isolate) {
        try {
          conn.query("SAVEPOINT unit");
        } catch (error) {
          this.rollbackQuietly();
          return { kind: "storage-failed", error };
        }
      }
      try {
        const value = item.work(tx);
        if (value instanceof Promise) throw new TypeError("a unit of work must be synchronous");
        // The unit's deferred writes are sent here, so that a failure among them is its own.
        if (isolate) conn.query("RELEASE SAVEPOINT unit");
        outcomes.push({ ok: true, value });
        if (tx.hooks) for (const h of tx.hooks) hooks.add(h);
      } catch (e) {
        if (!isolate) {
          this.rollbackQuietly();
          return { kind: "unit-failed" };
        }
        conn.discard();
        try {
          conn.query("ROLLBACK TO SAVEPOINT unit");
          conn.query("RELEASE SAVEPOINT unit");
        } catch (error) {
          this.rollbackQuietly();
          return { kind: "storage-failed", error };
        }
        // Advisory locks taken inside it stay held (PostgreSQL keeps them to the end of the transaction).
        if (onceBefore) state.once = onceBefore;
        if (locksBefore) state.locks = locksBefore;
        outcomes.push({ ok: false, value: e instanceof PgError ? fromStatementError(e) : e });
      }
    }
    try {
      conn.query("COMMIT");
    } catch (error) {
      this.rollbackQuietly();
      // A deferred write of the optimistic run failed: find its unit by running the batch isolated.
      if (!isolate && error instanceof PgError && error.deferred) return { kind: "unit-failed" };
      return { kind: "storage-failed", error };
    }
    return { kind: "ok", outcomes, hooks };
  }

  private rollbackQuietly(): void {
    this.conn.discard();
    try {
      this.conn.query("ROLLBACK");
    } catch {
      // The connection is gone: PostgreSQL rolled the transaction back itself.
    }
  }

  private record(units: number, started: number, ok: boolean): void {
    const s = this.statsData;
    if (ok) {
      s.commits++;
      s.units += units;
      const bucket = BATCH_BUCKETS.find((b) => units <= b) ?? Number.POSITIVE_INFINITY;
      s.batchSizes.set(bucket, (s.batchSizes.get(bucket) ?? 0) + 1);
    } else {
      s.failedCommits++;
    }
    this.opts.onCommit?.(units, (performance.now() - started) / 1000, ok);
  }

  stats(): CommitterStats {
    return { ...this.statsData, batchSizes: new Map(this.statsData.batchSizes) };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.flush();
  }
}

/** A statement's refusal as the unit's error: constraint violations are the caller's, the rest storage failures. */
export function fromStatementError(e: PgError): Error {
  if (e.code === "23505") return new AppError("conflict", `already exists (${e.message})`, { cause: e });
  return e;
}
