import type { Clock } from "../core/clock.ts";
import { AppError, fromStorageError } from "../errors/index.ts";
import type {
  CommitOptions,
  Committer,
  CommitterStats,
  EnqueueResult,
  JobSpec,
  LeaseRef,
  OutboxEvent,
  Tx as ContractTx,
} from "./contract.ts";

/**
 * The group commit both drivers share (guarantee 1, docs/guarantees.md): batching, the optimistic
 * run and the isolated rerun with a savepoint around each unit, rejecting a whole batch whose
 * transaction failed, answering callers only after COMMIT, then the afterCommit hooks. A driver
 * supplies only its statements (the abstract methods below).
 */

export const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000];

export interface GroupCommitOptions {
  /** How long to wait for more work before committing; 0 = at the end of this event-loop turn. */
  windowMs: number;
  maxBatch: number;
  clock: Clock;
  /** Observes every commit (metrics). */
  onCommit?: (units: number, seconds: number, ok: boolean) => void;
}

/** The contract operations a transaction offers, provided by the driver's queue and outbox. */
export interface TxOperations<T> {
  enqueue(tx: T, spec: JobSpec): EnqueueResult;
  ack(tx: T, lease: LeaseRef): boolean;
  emit(tx: T, event: OutboxEvent): string;
}

const unbound: TxOperations<never> = {
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

/** One unit's view of the batch transaction; a driver's Tx extends it with its connection. */
export abstract class UnitTx<T extends ContractTx> implements ContractTx {
  /** A Set: a hook registered by a thousand units (the queue's wake-up) runs once. Made on first use. */
  hooks: Set<() => void> | null = null;
  /** Run just before the batch's COMMIT; made on first use. */
  committing: (() => void)[] | null = null;
  constructor(
    readonly now: number,
    private readonly ops: TxOperations<T>,
  ) {}
  /** This unit as the driver's transaction type (the subclass implements T). */
  private get self(): T {
    return this as unknown as T;
  }
  enqueue(spec: JobSpec): EnqueueResult {
    return this.ops.enqueue(this.self, spec);
  }
  ack(lease: LeaseRef): boolean {
    return this.ops.ack(this.self, lease);
  }
  emit(event: OutboxEvent): string {
    return this.ops.emit(this.self, event);
  }
  afterCommit(fn: () => void): void {
    (this.hooks ??= new Set()).add(fn);
  }
  beforeCommit(fn: () => void): void {
    (this.committing ??= []).push(fn);
  }
}

interface Pending<T> {
  work: (tx: T) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

type Attempt =
  | { kind: "ok"; outcomes: { ok: boolean; value: unknown }[]; hooks: Set<() => void> }
  | { kind: "unit-failed" }
  | { kind: "storage-failed"; error: unknown };

/**
 * Units of work that arrive while a commit is being prepared share one transaction; every caller
 * is resolved only after COMMIT returned. A batch first runs optimistically, all units straight
 * into the transaction. If one throws, the transaction is rolled back and the batch runs again with
 * a SAVEPOINT around each unit, so the failing unit loses only its own writes. Units must therefore
 * touch nothing outside the transaction except through `afterCommit`, and are synchronous: a unit
 * that awaited would hold the whole batch's transaction open across the event loop.
 */
export abstract class GroupCommitter<T extends ContractTx, U extends UnitTx<T> & T> implements Committer<T> {
  private pending: Pending<T>[] = [];
  private scheduled = false;
  private closed = false;
  protected ops: TxOperations<T> = unbound;
  private readonly statsData: CommitterStats = { commits: 0, units: 0, failedCommits: 0, batchSizes: new Map() };

  constructor(private readonly options: GroupCommitOptions) {}

  /** Open the batch's transaction. */
  protected abstract begin(): void;
  /** The transaction object one unit of this attempt works on. */
  protected abstract newTx(now: number): U;
  /** Open a savepoint before an isolated unit. */
  protected abstract savepoint(tx: U): void;
  /** Release it after the unit returned; a throw here is the unit's failure. */
  protected abstract release(tx: U): void;
  /** Undo a failed isolated unit's writes and close its savepoint. */
  protected abstract rollbackUnit(tx: U): void;
  protected abstract commit(): void;
  /** Roll the transaction back, ignoring a failure (the connection may have rolled it back itself). */
  protected abstract rollbackQuietly(): void;
  /** The error a failed unit's caller sees. */
  protected unitError(e: unknown): unknown {
    return e;
  }
  /** COMMIT failed: whether that is one unit's doing (rerun isolated) rather than the storage's. */
  protected commitFailedByUnit(_error: unknown, _isolate: boolean): boolean {
    return false;
  }
  /** Runs after each COMMIT, before anyone is answered; a throw fails the batch as a storage error. */
  protected afterCommitted(): void {}

  bind(ops: TxOperations<T>): void {
    this.ops = ops;
  }

  /** Units enqueue and ack through the driver's queue and emit through its outbox. */
  bindStores(
    queue: { enqueueTx(tx: T, spec: JobSpec): EnqueueResult; ackTx(tx: T, lease: LeaseRef): boolean },
    outbox: { emitTx(tx: T, event: OutboxEvent): string },
  ): void {
    this.bind({
      enqueue: (tx, spec) => queue.enqueueTx(tx, spec),
      ack: (tx, lease) => queue.ackTx(tx, lease),
      emit: (tx, event) => outbox.emitTx(tx, event),
    });
  }

  run<R>(work: (tx: T) => R, opts?: CommitOptions): Promise<R> {
    if (this.closed) return Promise.reject(new AppError("unavailable", "shutting down", { retryAfter: 5 }));
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (v: unknown) => void, reject });
      this.schedule(opts?.waitMs ?? this.options.windowMs);
    });
  }

  /**
   * The next commit: at the end of this event-loop turn when a unit cannot wait (or the batch is
   * full), else when the earliest waiting unit's time is up. Units that may wait (the SMTP
   * accept's and the mail processing's) go with any commit that starts sooner: under load twice
   * as many share a commit, and every commit writes each page it touched once, whatever the
   * number of its rows (docs/performance.md).
   */
  private schedule(waitMs: number): void {
    if (this.scheduled) return;
    if (waitMs <= 0 || this.pending.length >= this.options.maxBatch) {
      this.scheduled = true;
      setImmediate(this.flushScheduled);
      return;
    }
    const at = performance.now() + waitMs;
    if (this.timer && at >= this.deadline) return;
    if (this.timer) clearTimeout(this.timer);
    this.deadline = at;
    this.timer = setTimeout(this.flushScheduled, waitMs);
  }

  /** A commit scheduled for a unit that may wait, and when it is due. */
  private timer: ReturnType<typeof setTimeout> | null = null;
  private deadline = Number.POSITIVE_INFINITY;

  private readonly flushScheduled = (): void => {
    this.scheduled = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.deadline = Number.POSITIVE_INFINITY;
    this.flush();
  };

  /** Commit everything pending now, in batches of at most maxBatch. */
  flush(): void {
    while (this.pending.length > 0) this.commitBatch(this.pending.splice(0, this.options.maxBatch));
  }

  private commitBatch(batch: Pending<T>[]): void {
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

  /** One try at the batch's transaction. Without savepoints it stops at the first failing unit. */
  private execute(batch: Pending<T>[], isolate: boolean): Attempt {
    try {
      this.begin();
    } catch (error) {
      return { kind: "storage-failed", error };
    }
    const now = this.options.clock.now();
    const outcomes: { ok: boolean; value: unknown }[] = [];
    const hooks = new Set<() => void>();
    let committing: (() => void)[] | null = null;
    for (const item of batch) {
      const tx = this.newTx(now);
      if (isolate) {
        try {
          this.savepoint(tx);
        } catch (error) {
          this.rollbackQuietly();
          return { kind: "storage-failed", error };
        }
      }
      try {
        const value = item.work(tx);
        if (value instanceof Promise) throw new TypeError("a unit of work must be synchronous");
        if (isolate) this.release(tx);
        outcomes.push({ ok: true, value });
        if (tx.hooks) for (const h of tx.hooks) hooks.add(h);
        if (tx.committing) (committing ??= []).push(...tx.committing);
      } catch (e) {
        if (!isolate) {
          this.rollbackQuietly();
          return { kind: "unit-failed" };
        }
        try {
          this.rollbackUnit(tx);
        } catch (error) {
          this.rollbackQuietly();
          return { kind: "storage-failed", error };
        }
        outcomes.push({ ok: false, value: this.unitError(e) });
      }
    }
    // Only the attempt that commits runs them, each once; a failed one is its caller's to undo.
    if (committing)
      for (const fn of committing) {
        try {
          fn();
        } catch {
          // Work that overlaps the commit is the unit's own affair: the batch commits regardless.
        }
      }
    try {
      this.commit();
    } catch (error) {
      this.rollbackQuietly();
      if (this.commitFailedByUnit(error, isolate)) return { kind: "unit-failed" };
      return { kind: "storage-failed", error };
    }
    try {
      this.afterCommitted();
    } catch (error) {
      return { kind: "storage-failed", error };
    }
    return { kind: "ok", outcomes, hooks };
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
    this.options.onCommit?.(units, (performance.now() - started) / 1000, ok);
  }

  stats(): CommitterStats {
    return { ...this.statsData, batchSizes: new Map(this.statsData.batchSizes) };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.flushScheduled();
  }
}
