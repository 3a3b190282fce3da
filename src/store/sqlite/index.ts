import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import { systemClock } from "../../core/clock.ts";
import { newId } from "../../core/ids.ts";
import { JournalProbe } from "../../core/journal-probe.ts";
import { kv } from "../schema/index.ts";
import { BlobStore } from "../blobs.ts";
import { SqliteRetention } from "./retention.ts";
import type { Blobs, Storage, StorageOptions } from "../contract.ts";
import { migrate, type MigrateResult } from "../migrate.ts";
import { DATABASE_FILE, openDatabase, type SqliteHandle } from "../sqlite.ts";
import { BackgroundCheckpointer } from "./checkpointer.ts";
import { SqliteCommitter } from "./committer.ts";
import { SqliteAgents } from "./agents.ts";
import { SqliteApprovals } from "./approvals.ts";
import { SqliteAudit } from "./audit.ts";
import { SqliteEvents } from "./events.ts";
import { SqliteLeases } from "./leases.ts";
import { SqliteMail } from "./mail.ts";
import { SqliteOutbox } from "./outbox.ts";
import { SqliteQueue } from "./queue.ts";
import { SqliteResources } from "./resources.ts";
import { SqliteSecrets } from "./secrets.ts";
import { SqliteTokens } from "./tokens.ts";
import { SqliteSessions } from "./sessions.ts";
import { SqliteUsers } from "./users.ts";

/** The journal probe's file, beside the database (src/core/journal-probe.ts). */
export const JOURNAL_PROBE_FILE = "agentowl.db-probe";

export interface SqliteStorageOptions extends StorageOptions {
  /** The database file; `<dir>/agentowl.db` by default. */
  file?: string;
}

export class SqliteStorage implements Storage {
  readonly driver = "sqlite";
  readonly shared = false;
  readonly leases: SqliteLeases;
  readonly committer: SqliteCommitter;
  readonly queue: SqliteQueue;
  readonly outbox: SqliteOutbox;
  readonly resources: SqliteResources;
  readonly tokens: SqliteTokens;
  readonly events: SqliteEvents;
  readonly audit: SqliteAudit;
  readonly approvals: SqliteApprovals;
  readonly mail: SqliteMail;
  readonly secrets: SqliteSecrets;
  readonly users: SqliteUsers;
  readonly sessions: SqliteSessions;
  readonly agents: SqliteAgents;
  /** Files under `<dir>/blobs` (src/store/blobs.ts). */
  readonly blobs: Blobs;
  /** One process: the spool is the data dir's segment files, and each endpoint's places are counted in memory. */
  readonly spool = null;
  readonly slots = null;
  readonly retention: SqliteRetention;
  private checkpointer: BackgroundCheckpointer | null = null;
  /** background() was called and its checkpointer waits for a WAL worth copying (its error sink). */
  private checkpointerWanted: ((message: string) => void) | null = null;
  /** Beside the database, on the same filesystem: a database in memory needs none. */
  private readonly probe: JournalProbe | null;

  constructor(
    readonly handle: SqliteHandle,
    readonly migration: MigrateResult,
    opts: SqliteStorageOptions,
  ) {
    const { sqlite, db } = handle;
    this.probe =
      opts.file === ":memory:"
        ? null
        : new JournalProbe(join(dirname(opts.file ?? join(opts.dir, DATABASE_FILE)), JOURNAL_PROBE_FILE));
    this.committer = new SqliteCommitter(sqlite, db, {
      windowMs: opts.windowMs ?? 0,
      maxBatch: opts.maxBatch ?? 1000,
      clock: opts.clock ?? systemClock,
      onCommit: (units, seconds, ok) => {
        opts.onCommit?.(units, seconds, ok);
        if (this.checkpointerWanted) this.startCheckpointerOnceWalGrew();
      },
      verify: () => this.probe?.check(),
    });
    this.queue = new SqliteQueue(handle, this.committer, opts.clock, opts.random);
    this.outbox = new SqliteOutbox(db, this.committer);
    this.resources = new SqliteResources(db, this.committer);
    this.audit = new SqliteAudit(handle, this.committer, opts.clock);
    this.tokens = new SqliteTokens(db, this.committer, this.audit);
    this.events = new SqliteEvents(handle);
    this.approvals = new SqliteApprovals(db, this.committer, this.audit);
    this.mail = new SqliteMail(handle);
    this.secrets = new SqliteSecrets(db);
    this.users = new SqliteUsers(db);
    this.sessions = new SqliteSessions(db, this.committer);
    this.agents = new SqliteAgents(handle, this.committer);
    this.blobs = new BlobStore(join(opts.dir, "blobs"));
    this.retention = new SqliteRetention(handle, this.committer, this.blobs);
    this.leases = new SqliteLeases(opts.clock ?? systemClock);
    this.committer.bindStores(this.queue, this.outbox);
  }

  async probeWrite(): Promise<void> {
    await this.committer.run((tx) => {
      tx.db
        .insert(kv)
        .values({ key: "health.write", value: newId("req", tx.now), updatedAt: tx.now })
        .onConflictDoUpdate({ target: kv.key, set: { value: newId("req", tx.now), updatedAt: tx.now } })
        .run();
    });
  }

  /**
   * Checkpoint the WAL on a worker thread instead of inside COMMIT (src/store/sqlite/checkpointer.ts).
   * The appliance does; tests and tools keep SQLite's automatic checkpoint.
   */
  checkpointInBackground(onError?: (message: string) => void, intervalMs?: number): BackgroundCheckpointer {
    this.checkpointer ??= new BackgroundCheckpointer(this.handle.sqlite, this.handle.path, onError);
    this.checkpointer.start(intervalMs);
    return this.checkpointer;
  }

  /**
   * The checkpoint thread starts once the WAL has grown past WAL_START_BYTES (looked at after each
   * commit until then), not at open: an idle appliance has no WAL to copy, and the thread costs
   * it about 3 MB. Until it starts, SQLite's own automatic checkpoint (1,000 pages) stays on.
   */
  background(onError: (message: string) => void): { stop(): Promise<void> } {
    this.checkpointerWanted = onError;
    // A WAL a crash left behind is copied at once.
    this.startCheckpointerOnceWalGrew();
    return {
      stop: async () => {
        this.checkpointerWanted = null;
        await this.checkpointer?.stop();
      },
    };
  }

  private startCheckpointerOnceWalGrew(): void {
    const onError = this.checkpointerWanted;
    if (!onError) return;
    let bytes = 0;
    try {
      bytes = statSync(`${this.handle.path}-wal`).size;
    } catch {
      // No WAL file (yet): nothing to copy.
    }
    if (bytes < WAL_START_BYTES) return;
    this.checkpointerWanted = null;
    this.checkpointInBackground(onError);
  }

  async close(): Promise<void> {
    await this.committer.close();
    // Every entry is committed now: the audit chain's last checkpoint covers them all.
    await this.audit.closeAnchor();
    await this.checkpointer?.stop();
    // Fold the WAL back into the database so a copied data dir is one self-contained file.
    try {
      this.handle.sqlite.run("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch {
      // Another connection may hold the WAL open; the next start checkpoints it.
    }
    this.handle.sqlite.close();
    this.probe?.close();
  }
}

/** The WAL size at which background() starts the checkpoint thread: a quarter of SQLite's automatic checkpoint. */
export const WAL_START_BYTES = 1 << 20;

/** Open (creating if needed) and migrate the database, and assemble the storage contract on it. */
export function openSqliteStorage(opts: SqliteStorageOptions): SqliteStorage {
  const handle = openDatabase(opts.file ?? join(opts.dir, DATABASE_FILE));
  try {
    return new SqliteStorage(handle, migrate(handle.sqlite, undefined, opts.clock), opts);
  } catch (e) {
    handle.sqlite.close();
    throw e;
  }
}

export { SqliteCommitter, type SqliteTx } from "./committer.ts";
export { checkDatabaseFile, type ReferencedFiles, referencedFiles, snapshotDatabase } from "./snapshot.ts";
export { SqliteAgents } from "./agents.ts";
export { SqliteApprovals } from "./approvals.ts";
export { SqliteAudit } from "./audit.ts";
export { SqliteEvents } from "./events.ts";
export { SqliteMail } from "./mail.ts";
export { SqliteOutbox } from "./outbox.ts";
export { SqliteQueue } from "./queue.ts";
export { SqliteResources } from "./resources.ts";
export { SqliteSecrets } from "./secrets.ts";
export { SqliteTokens } from "./tokens.ts";
export { SqliteSessions } from "./sessions.ts";
export { SqliteUsers } from "./users.ts";
