import { systemClock } from "../../core/clock.ts";
import { newId } from "../../core/ids.ts";
import type { Storage, StorageOptions } from "../contract.ts";
import { PgAgents } from "./agents.ts";
import { PgApprovals } from "./approvals.ts";
import { PgAudit } from "./audit.ts";
import { PgCommitter } from "./committer.ts";
import { PgDb } from "./db.ts";
import { PgEvents } from "./events.ts";
import { PgBlobs, PgSlots, PgSpool } from "./files.ts";
import { PgLeases } from "./leases.ts";
import { migratePostgres } from "./migrate.ts";
import { PgMail } from "./mail.ts";
import { PgOutbox } from "./outbox.ts";
import { PgSecrets } from "./secrets.ts";
import { PgSessions, PgUsers } from "./users.ts";
import { PgQueue } from "./queue.ts";
import { PgResources } from "./resources.ts";
import { PgTokens } from "./tokens.ts";

export interface PostgresStorageOptions extends StorageOptions {
  /** `postgres://user:password@host:port/database` */
  url: string;
}

/**
 * The storage contract on PostgreSQL (docs/architecture.md#storage-contract-and-postgresql): the
 * committer on a synchronous connection (./bridge.ts) and every store of the contract; blobs, the
 * SMTP spool and the endpoints' places in the database too, so every node shares them (./files.ts).
 */
export class PostgresStorage implements Storage {
  readonly driver = "postgres";
  /** Several nodes may use the database. */
  readonly shared = true;
  readonly leases: PgLeases;
  readonly committer: PgCommitter;
  readonly queue: PgQueue;
  readonly outbox: PgOutbox;
  readonly resources: PgResources;
  readonly tokens: PgTokens;
  readonly events: PgEvents;
  readonly audit: PgAudit;
  readonly approvals: PgApprovals;
  readonly mail: PgMail;
  readonly secrets: PgSecrets;
  readonly users: PgUsers;
  readonly sessions: PgSessions;
  readonly agents: PgAgents;
  readonly blobs: PgBlobs;
  readonly spool: PgSpool;
  readonly slots: PgSlots;

  constructor(
    readonly db: PgDb,
    readonly migration: { applied: string[]; version: number },
    opts: PostgresStorageOptions,
  ) {
    const clock = opts.clock ?? systemClock;
    this.committer = new PgCommitter(db.sync, {
      windowMs: opts.windowMs ?? 0,
      maxBatch: opts.maxBatch ?? 1000,
      clock,
      onCommit: opts.onCommit,
    });
    this.queue = new PgQueue(db, this.committer, clock, opts.random);
    this.outbox = new PgOutbox(db, this.committer);
    this.resources = new PgResources(db, this.committer);
    this.audit = new PgAudit(db, this.committer, clock);
    this.tokens = new PgTokens(db, this.committer, this.audit);
    this.events = new PgEvents(db);
    this.approvals = new PgApprovals(db, this.committer, this.audit);
    this.agents = new PgAgents(db, this.committer);
    this.leases = new PgLeases(this.committer);
    this.mail = new PgMail(db);
    this.users = new PgUsers(db);
    this.sessions = new PgSessions(db, this.committer);
    this.secrets = new PgSecrets(db);
    this.blobs = new PgBlobs(db, clock);
    this.spool = new PgSpool(db, clock);
    this.slots = new PgSlots(db, clock);
    this.committer.bindStores(this.queue, this.outbox);
  }

  async probeWrite(): Promise<void> {
    await this.committer.run((tx) => {
      tx.conn.defer(
        "INSERT INTO kv (key, value, updated_at) VALUES ('health.write', $1, $2) " +
          "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [newId("req", tx.now), tx.now],
      );
    });
  }

  /** Wake-ups from the other nodes' commits (LISTEN); the runner's and the relay's polls remain the fallback. */
  background(onError: (message: string) => void): { stop(): Promise<void> } {
    const subscriptions = Promise.all([this.queue.listen(), this.outbox.listen(), this.resources.listen()]).catch(
      (e) => {
        onError(`LISTEN failed, other nodes' work is noticed by polling only: ${(e as Error).message}`);
        return [];
      },
    );
    return {
      stop: async () => {
        for (const s of await subscriptions) await s.unlisten().catch(() => {});
      },
    };
  }

  async close(): Promise<void> {
    await this.committer.close();
    await this.spool.close();
    // Every entry of this node is committed now: the audit chain's last checkpoint covers them.
    await this.audit.closeAnchor().catch(() => {});
    await this.db.close();
  }
}

/** Connect, migrate (taking turns with other nodes), and assemble the storage contract on PostgreSQL. */
export function openPostgresStorage(opts: PostgresStorageOptions): PostgresStorage {
  const db = new PgDb(opts.url);
  try {
    const storage = new PostgresStorage(db, migratePostgres(db.sync, undefined, opts.clock), opts);
    // The asynchronous connections are opened now, not by the first claim or read that needs one
    // (a connection costs a few milliseconds); a failure here surfaces again at that first use.
    void db.pool.connect().catch(() => {});
    void db.claims.connect().catch(() => {});
    return storage;
  } catch (e) {
    void db.close();
    throw e;
  }
}

export { PgCommitter, type PgTx } from "./committer.ts";
export { PgQueue } from "./queue.ts";
export { PgOutbox } from "./outbox.ts";
export * as pgSchema from "./schema/index.ts";
