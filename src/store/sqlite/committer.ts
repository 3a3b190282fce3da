import type { Database } from "bun:sqlite";
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
import type { Db } from "../sqlite.ts";

/** What a unit of work is on SQLite: the contract's operations plus drizzle on the open transaction (only src/store/sqlite/ sees it). */
export interface SqliteTx extends ContractTx {
  readonly db: Db;
}

export interface CommitterOptions {
  /** How long to wait for more work before committing; 0 = at the end of this event-loop turn. */
  windowMs: number;
  maxBatch: number;
  clock: Clock;
  /** Observes every commit (metrics). */
  onCommit?: (units: number, seconds: number, ok: boolean) => void;
  /**
   * Runs after each COMMIT, before anyone is answered: throws when the filesystem no longer keeps
   * what it just acknowledged (src/core/journal-probe.ts); the batch then fails as a storage error.
   */
  verify?: () => void;
}

interface Pending {
  work: (tx: SqliteTx) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000];

/** The contract operations a transaction offers, provided by the queue and the outbox. */
export interface TxOperations {
  enqueue(tx: SqliteTx, spec: JobSpec): EnqueueResult;
  ack(tx: SqliteTx, lease: LeaseRef): boolean;
  emit(tx: SqliteTx, event: OutboxEvent): string;
}

class Tx implements SqliteTx {
  /** A Set: a hook registered by a thousand units (the queue's wake-up) runs once. Made on first use. */
  hooks: Set<() => void> | null = null;
  constructor(
    readonly db: Db,
    readonly now: number,
    private readonly ops: TxOperations,
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
}

const unbound: TxOperations = {
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
 * Group commit (guarantee 1 (docs/guarantees.md)). Units of work that arrive while a commit is being prepared share one
 * transaction and so one fsync of the WAL; every caller is resolved only after COMMIT returned,
 * i.e. after the data is on disk.
 *
 * A batch first runs optimistically, all units straight into the transaction. If one throws, the
 * transaction is rolled back and the batch runs again with a SAVEPOINT around each unit, so the
 * failing unit loses only its own writes. Units must therefore touch nothing outside the
 * transaction except through `afterCommit`. Units are synchronous: bun:sqlite is synchronous,
 * and a unit that awaited would hold the whole batch's transaction open across the event loop.
 */
export class SqliteCommitter implements Committer<SqliteTx> {
  private pending: Pending[] = [];
  private scheduled = false;
  private closed = false;
  private ops: TxOperations = unbound;
  /** Told when writes made in this connection's transaction are undone (a whole batch, or one unit's savepoint). */
  private readonly rolledBack = new Set<() => void>();
  private readonly statsData: CommitterStats = { commits: 0, units: 0, failedCommits: 0, batchSizes: new Map() };
  private readonly stmt;

  constructor(
    private readonly sqlite: Database,
    private readonly db: Db,
    private readonly opts: CommitterOptions,
  ) {
    const q = (text: string) => sqlite.prepare(text);
    this.stmt = {
      begin: q("BEGIN IMMEDIATE"),
      commit: q("COMMIT"),
      rollback: q("ROLLBACK"),
      savepoint: q("SAVEPOINT unit"),
      release: q("RELEASE unit"),
      rollbackTo: q("ROLLBACK TO unit"),
    };
  }

  bind(ops: TxOperations): void {
    this.ops = ops;
  }

  /**
   * `fn` runs whenever writes of the open transaction are undone: a cache of something the
   * transaction wrote (the audit chain's head) is dropped then, and read again from the table.
   */
  onRollback(fn: () => void): void {
    this.rolledBack.add(fn);
  }

  private undone(): void {
    for (const fn of this.rolledBack) fn();
  }

  run<T>(work: (tx: SqliteTx) => T): Promise<T> {
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

  /** Commit everything pending now, in batches of at most maxBatch. */
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

  /** One try at the batch's transaction. Without savepoints it stops at the first failing unit. */
  private execute(
    batch: Pending[],
    isolate: boolean,
  ):
    | { kind: "ok"; outcomes: { ok: boolean; value: unknown }[]; hooks: Set<() => void> }
    | { kind: "unit-failed" }
    | { kind: "storage-failed"; error: unknown } {
    const { stmt } = this;
    try {
      stmt.begin.run();
    } catch (error) {
      return { kind: "storage-failed", error };
    }
    const now = this.opts.clock.now();
    const outcomes: { ok: boolean; value: unknown }[] = [];
    const hooks = new Set<() => void>();
    for (const item of batch) {
      const tx = new Tx(this.db, now, this.ops);
      if (isolate) stmt.savepoint.run();
      try {
        const value = item.work(tx);
        if (value instanceof Promise) throw new TypeError("a unit of work must be synchronous");
        if (isolate) stmt.release.run();
        outcomes.push({ ok: true, value });
        if (tx.hooks) for (const h of tx.hooks) hooks.add(h);
      } catch (e) {
        if (!isolate) {
          this.rollbackQuietly();
          return { kind: "unit-failed" };
        }
        stmt.rollbackTo.run();
        stmt.release.run();
        this.undone();
        outcomes.push({ ok: false, value: e });
      }
    }
    try {
      stmt.commit.run();
    } catch (error) {
      this.rollbackQuietly();
      return { kind: "storage-failed", error };
    }
    try {
      this.opts.verify?.();
    } catch (error) {
      // What the filesystem still keeps is unknown: whatever was cached of it is read again.
      this.undone();
      return { kind: "storage-failed", error };
    }
    return { kind: "ok", outcomes, hooks };
  }

  private rollbackQuietly(): void {
    try {
      this.stmt.rollback.run();
    } catch {
      // COMMIT may already have rolled back (SQLITE_FULL, SQLITE_IOERR).
    }
    this.undone();
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

export { BATCH_BUCKETS };
