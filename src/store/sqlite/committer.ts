import type { Database } from "bun:sqlite";
import type { Tx as ContractTx } from "../contract.ts";
import { type GroupCommitOptions, GroupCommitter, type TxOperations as Operations, UnitTx } from "../group-commit.ts";
import type { Db } from "../sqlite.ts";

export { BATCH_BUCKETS } from "../group-commit.ts";

/** What a unit of work is on SQLite: the contract's operations plus drizzle on the open transaction (only src/store/sqlite/ sees it). */
export interface SqliteTx extends ContractTx {
  readonly db: Db;
}

export interface CommitterOptions extends GroupCommitOptions {
  /**
   * Runs after each COMMIT, before anyone is answered: throws when the filesystem no longer keeps
   * what it just acknowledged (src/core/journal-probe.ts); the batch then fails as a storage error.
   */
  verify?: () => void;
}

/** The contract operations a transaction offers, provided by the queue and the outbox. */
export type TxOperations = Operations<SqliteTx>;

class Tx extends UnitTx<SqliteTx> implements SqliteTx {
  constructor(
    readonly db: Db,
    now: number,
    ops: TxOperations,
  ) {
    super(now, ops);
  }
}

/**
 * Group commit on SQLite (the algorithm: ../group-commit.ts). A batch shares one transaction and so
 * one fsync of the WAL; units are synchronous because bun:sqlite is.
 */
export class SqliteCommitter extends GroupCommitter<SqliteTx, Tx> {
  private readonly stmt;

  constructor(
    sqlite: Database,
    private readonly db: Db,
    private readonly opts: CommitterOptions,
  ) {
    super(opts);
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

  protected begin(): void {
    this.stmt.begin.run();
  }
  protected newTx(now: number): Tx {
    return new Tx(this.db, now, this.ops);
  }
  protected savepoint(): void {
    this.stmt.savepoint.run();
  }
  protected release(): void {
    this.stmt.release.run();
  }
  protected rollbackUnit(): void {
    this.stmt.rollbackTo.run();
    this.stmt.release.run();
    this.undone();
  }
  protected commit(): void {
    this.stmt.commit.run();
  }
  protected rollbackQuietly(): void {
    try {
      this.stmt.rollback.run();
    } catch {
      // COMMIT may already have rolled back (SQLITE_FULL, SQLITE_IOERR).
    }
    this.undone();
  }
  protected override afterCommitted(): void {
    try {
      this.opts.verify?.();
    } catch (e) {
      // What the filesystem still keeps is unknown: whatever was cached of it is read again.
      this.undone();
      throw e;
    }
  }

  /** Told when writes made in this connection's transaction are undone (a whole batch, or one unit's savepoint). */
  private readonly rolledBack = new Set<() => void>();

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
}
