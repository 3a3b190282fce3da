/**
 * Storage: the contract (./contract.ts) and the one way to open it. Callers name the contract's
 * types only; the SQLite driver's classes are exported for its own tests and for the callers that
 * still use its synchronous reads (docs/architecture.md#storage).
 */
import type { Storage, StorageOptions } from "./contract.ts";
import type * as Postgres from "./postgres/index.ts";
import { openSqliteStorage } from "./sqlite/index.ts";

export type * from "./contract.ts";
export {
  APPROVAL_DECIDED,
  APPROVAL_STATES,
  DELIVERY_STATES,
  EVENT_SEARCH_MAX,
  EVENT_STATES,
  ISOLATIONS,
  RUNTIME_STATES,
  TOOL_CALL_STATES,
  TOOL_STATES,
} from "./contract.ts";
export type { AuditEntry, Broken, ChainedEntry, ChainKeys } from "./audit-chain.ts";
export { parseExpectedHead } from "./audit-chain.ts";
export type { Checkpoint } from "./audit-checkpoints.ts";
export { migrate, SCHEMA_VERSION } from "./migrate.ts";
export * as schema from "./schema/index.ts";
export { DATABASE_FILE, type Db, lockDataDir, openDatabase, prepareDataDir, type SqliteHandle } from "./sqlite.ts";
export {
  openSqliteStorage,
  SqliteAgents,
  SqliteApprovals,
  SqliteAudit,
  SqliteEvents,
  SqliteMail,
  SqliteResources,
  SqliteSecrets,
  SqliteStorage,
  type SqliteStorageOptions,
  SqliteTokens,
  type SqliteTx,
} from "./sqlite/index.ts";
export { BlobStore } from "./blobs.ts";
export { checkDatabaseFile, type ReferencedFiles, referencedFiles, snapshotDatabase } from "./sqlite/index.ts";
export type { PostgresStorage, PostgresStorageOptions } from "./postgres/index.ts";
export type { CopyProgress, FileCopy, TableCount } from "./to-postgres.ts";

/**
 * The PostgreSQL driver, loaded when a database URL names it: an appliance on SQLite never
 * evaluates it (its modules and drizzle's pg-core schema would be part of every idle process's memory).
 */
export function postgresDriver(): typeof Postgres {
  return require("./postgres/index.ts");
}

/** `agentowl store migrate --to postgres://…`'s copy (loads the PostgreSQL driver). */
export function toPostgres(): Promise<typeof import("./to-postgres.ts")> {
  return import("./to-postgres.ts");
}

/**
 * Open (creating and migrating if needed) the storage: PostgreSQL when `opts.databaseUrl` names a
 * database (the `database_url` setting, `AGENTOWL_DATABASE_URL`), else SQLite under `opts.dir`.
 * Callers never name a driver.
 */
export function openStorage(opts: StorageOptions): Storage {
  if (opts.databaseUrl) return postgresDriver().openPostgresStorage({ ...opts, url: opts.databaseUrl });
  return openSqliteStorage(opts);
}
