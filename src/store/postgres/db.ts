import { SQL } from "bun";
import { SyncConnection } from "./bridge.ts";

/**
 * The PostgreSQL driver's ways to the database: `sync`, the committer's connection on a worker
 * thread (statements inside units of work, ./bridge.ts), and `pool` (with `claims`), Bun's
 * asynchronous client for reads outside a unit, for LISTEN, and for the queue's claims and acks,
 * which are single statements that need no unit. A pool statement is always a single autocommit statement:
 * a transaction on the pool that waited for JavaScript between statements could hold a lock the
 * committer needs while the committer holds the event loop.
 */
export class PgDb {
  readonly sync: SyncConnection;
  readonly pool: SQL;
  /**
   * The queue's claims (PgQueue.lease): a connection of their own whose planner never uses bitmap
   * scans or sorts, so that a claim walks jobs_ready in order and stops at its limit whatever the
   * table's statistics say (after a burst of enqueues they predate the backlog, and the planner
   * would read every ready job and sort them all). Set for the session, the claim needs no
   * statements around it: it is one autocommit statement.
   */
  readonly claims: SQL;
  /** This process among the nodes on the database: notifications it sent itself are not news. */
  readonly node = crypto.randomUUID();

  constructor(readonly url: string) {
    // Every commit is acknowledged only once it is durable on the server (guarantee 1).
    const connection = { synchronous_commit: "on", application_name: "agentowl" };
    this.sync = new SyncConnection(url, connection);
    this.pool = new SQL(url, { max: 4, connection, idleTimeout: 30 });
    this.claims = new SQL(url, {
      max: 1,
      connection: { ...connection, enable_bitmapscan: "off", enable_sort: "off" },
      idleTimeout: 30,
    });
  }

  /** A single statement outside any unit of work. */
  async read<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    return Array.from(await this.pool.unsafe(text, params as unknown[])) as T[];
  }

  async close(): Promise<void> {
    await this.claims.close({ timeout: 5 }).catch(() => {});
    await this.pool.close({ timeout: 5 }).catch(() => {});
    await this.sync.close();
  }
}

/** A bigint column (PostgreSQL sends int8 as text) as a number; null stays null. */
export const num = (v: unknown): number => (typeof v === "number" ? v : Number(v));
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
