import { AppError } from "../../errors/index.ts";
import type { Tx as ContractTx } from "../contract.ts";
import { type GroupCommitOptions, GroupCommitter, type TxOperations, UnitTx } from "../group-commit.ts";
import { PgError, type SyncConnection } from "./bridge.ts";

/** A unit of work on PostgreSQL: the contract's operations plus the synchronous connection of the open transaction. */
export interface PgTx extends ContractTx {
  readonly conn: SyncConnection;
  /** Take a transaction-level advisory lock once per transaction (serialized appends: the outbox, the audit chain). */
  lock(key: number): void;
  /** True the first time `tag` is asked in this transaction (a NOTIFY per transaction, not per unit). */
  once(tag: string): boolean;
  /**
   * Queue `row` for `tail`, written at the end of the transaction, just before its COMMIT, under
   * the tail's advisory lock: the lock is held for those statements and the commit only, not for
   * the rest of the batch. Dropped with the unit when it is rolled back to its savepoint.
   */
  atEnd<R>(tail: Tail<R>, row: R): void;
}

/**
 * Appends that must become visible in the order they were numbered across nodes (the outbox, the
 * audit chain): taken in one advisory lock at the end of a batch's transaction.
 * docs/architecture.md#the-postgresql-driver.
 */
export interface Tail<R> {
  /** The advisory lock the rows are written under. */
  readonly lock: number;
  /** Tails are written in ascending order, after the lock. */
  readonly order: number;
  /** Write the batch's rows (in the order they were queued) on `conn`; deferred statements go with the COMMIT. */
  write(conn: SyncConnection, rows: R[]): void;
}

export type PgCommitterOptions = GroupCommitOptions;

export type PgTxOperations = TxOperations<PgTx>;

/** What one try at a batch's transaction shares: the advisory locks it already holds. */
interface BatchState {
  locks: Set<number>;
  once: Set<string>;
  tails: Map<Tail<unknown>, unknown[]>;
}

/** What a unit rolled back to its savepoint gives back: the sets as they were, each tail's length. */
interface Before {
  locks: Set<number>;
  once: Set<string>;
  tails: Map<Tail<unknown>, number>;
}

class Tx extends UnitTx<PgTx> implements PgTx {
  /** The batch state before this unit's savepoint, restored when the unit is rolled back to it. */
  before: Before | null = null;
  constructor(
    readonly conn: SyncConnection,
    now: number,
    ops: PgTxOperations,
    readonly batch: BatchState,
  ) {
    super(now, ops);
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
  atEnd<R>(tail: Tail<R>, row: R): void {
    const rows = this.batch.tails.get(tail as Tail<unknown>);
    if (rows) rows.push(row);
    else this.batch.tails.set(tail as Tail<unknown>, [row]);
  }
}

/**
 * Group commit on PostgreSQL (the algorithm: ../group-commit.ts): the units that arrive during one
 * event-loop turn share one `BEGIN … COMMIT` (synchronous_commit=on: one WAL flush on the server
 * for all of them).
 *
 * Units stay synchronous: their statements go over a connection owned by a worker thread, and the
 * event loop waits for each answer (./bridge.ts). Writes whose result a unit does not read are
 * deferred and travel with the next read or with the COMMIT, so a batch of inserts costs one round
 * trip; a deferred write that fails surfaces there, and the optimistic run then becomes the
 * isolated one, in which each unit's writes are flushed before its savepoint is released (so the
 * failure is charged to the unit that wrote it).
 */
export class PgCommitter extends GroupCommitter<PgTx, Tx> {
  private state: BatchState = { locks: new Set(), once: new Set(), tails: new Map() };

  constructor(
    private readonly conn: SyncConnection,
    opts: PgCommitterOptions,
  ) {
    super(opts);
  }

  protected begin(): void {
    this.conn.discard();
    this.conn.defer("BEGIN");
    this.state = { locks: new Set(), once: new Set(), tails: new Map() };
  }
  protected newTx(now: number): Tx {
    return new Tx(this.conn, now, this.ops, this.state);
  }
  protected savepoint(tx: Tx): void {
    // What a unit rolled back to its savepoint did not do (its NOTIFY is gone with it); a lock
    // statement the unit deferred and never sent is discarded with it: take it again later.
    tx.before = {
      locks: new Set(this.state.locks),
      once: new Set(this.state.once),
      tails: new Map([...this.state.tails].map(([t, rows]) => [t, rows.length])),
    };
    this.conn.query("SAVEPOINT unit");
  }
  protected release(): void {
    // The unit's deferred writes are sent here, and its tails written (the lock is held from
    // here to the COMMIT: isolated runs are the rare path), so that a failure among them is its own.
    this.writeTails();
    this.conn.query("RELEASE SAVEPOINT unit");
  }
  protected rollbackUnit(tx: Tx): void {
    this.conn.discard();
    this.conn.query("ROLLBACK TO SAVEPOINT unit");
    this.conn.query("RELEASE SAVEPOINT unit");
    // A lock taken inside it is taken again when a later unit needs it (taking it twice is harmless).
    if (tx.before) {
      this.state.once = tx.before.once;
      this.state.locks = tx.before.locks;
      for (const [tail, rows] of this.state.tails) rows.length = tx.before.tails.get(tail) ?? 0;
    }
  }
  protected commit(): void {
    this.writeTails();
    this.conn.query("COMMIT");
  }
  /** Write the rows queued for the tails, each tail under its lock, and forget them. */
  private writeTails(): void {
    const tails = [...this.state.tails].filter(([, rows]) => rows.length > 0).sort(([a], [b]) => a.order - b.order);
    for (const [tail, rows] of tails) {
      if (!this.state.locks.has(tail.lock)) {
        this.conn.defer("SELECT pg_advisory_xact_lock($1)", [tail.lock]);
        this.state.locks.add(tail.lock);
      }
      tail.write(this.conn, rows);
    }
    for (const [, rows] of tails) rows.length = 0;
  }
  protected rollbackQuietly(): void {
    this.conn.discard();
    try {
      this.conn.query("ROLLBACK");
    } catch {
      // The connection is gone: PostgreSQL rolled the transaction back itself.
    }
  }
  protected override unitError(e: unknown): unknown {
    return e instanceof PgError ? fromStatementError(e) : e;
  }
  /** A deferred write of the optimistic run failed: find its unit by running the batch isolated. */
  protected override commitFailedByUnit(error: unknown, isolate: boolean): boolean {
    return !isolate && error instanceof PgError && error.deferred;
  }
}

/** A statement's refusal as the unit's error: constraint violations are the caller's, the rest storage failures. */
export function fromStatementError(e: PgError): Error {
  if (e.code === "23505") return new AppError("conflict", `already exists (${e.message})`, { cause: e });
  return e;
}
