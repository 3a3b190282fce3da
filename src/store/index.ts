export type * from "./contract.ts";
export type { AuditEntry, Broken, ChainedEntry, ChainKeys } from "./audit-chain.ts";
export type { Checkpoint } from "./audit-checkpoints.ts";
export { migrate, SCHEMA_VERSION } from "./migrate.ts";
export * as schema from "./schema/index.ts";
export { DATABASE_FILE, type Db, lockDataDir, openDatabase, prepareDataDir, type SqliteHandle } from "./sqlite.ts";
export { APPROVAL_DECIDED, type ApprovalRow, type ParkRequest, SqliteApprovals } from "./sqlite/index.ts";
export {
  type AuditQuery,
  parseExpectedHead,
  type DeliveryRow,
  type EventQuery,
  SqliteAudit,
  SqliteEvents,
  type StoredEvent,
} from "./sqlite/index.ts";
export type { AttemptRow } from "./sqlite/events.ts";
export { type AcceptedMail, type MailRecipient, type MailRow, SqliteMail } from "./sqlite/index.ts";
export {
  openSqliteStorage,
  SqliteResources,
  SqliteStorage,
  type SqliteStorageOptions,
  SqliteTokens,
  type SqliteTx,
} from "./sqlite/index.ts";
export { BlobStore } from "./blobs.ts";
