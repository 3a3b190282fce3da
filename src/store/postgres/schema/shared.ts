import { bigint, bigserial, customType, index, integer, pgTable, primaryKey, text } from "drizzle-orm/pg-core";

/**
 * What SQLite keeps in files under the data dir and several nodes must share
 * (docs/architecture.md#several-nodes): blobs, the raw mail spool, the audit chain's signed
 * checkpoints, and the endpoints' in-flight places.
 */

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({ dataType: () => "bytea" });

/** A content-addressed blob (src/store/contract.ts Blobs): its bytes are its chunks, in order. */
export const blobs = pgTable("blobs", {
  sha256: text("sha256").primaryKey(),
  size: bigint("size", { mode: "number" }).notNull(),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
});

/** 1 MiB pieces of a blob: no row is larger, and a read can go a piece at a time. */
export const blobChunks = pgTable(
  "blob_chunks",
  {
    sha256: text("sha256").notNull(),
    idx: integer("idx").notNull(),
    bytes: bytea("bytes").notNull(),
  },
  (t) => [primaryKey({ columns: [t.sha256, t.idx] })],
);

/**
 * The SMTP spool on a shared database: a message is (segment, offset, length) as in the file
 * spool, its bytes 1 MiB chunks; committed before the row that names it, so before the 250.
 */
export const spoolChunks = pgTable(
  "spool_chunks",
  {
    segment: text("segment").notNull(),
    offset: bigint("offset", { mode: "number" }).notNull(),
    idx: integer("idx").notNull(),
    bytes: bytea("bytes").notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.segment, t.offset, t.idx] }), index("spool_chunks_created").on(t.createdAt)],
);

/**
 * The audit chain's signed checkpoints (src/store/audit-checkpoints.ts), one line each, shared by
 * every node, in `id` order; `seq` and `pruned_through` (copied out of the signed line) never go
 * back along it: an insert that would is refused.
 */
export const auditCheckpoints = pgTable("audit_checkpoints", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  seq: bigint("seq", { mode: "number" }).notNull(),
  prunedThrough: bigint("pruned_through", { mode: "number" }).notNull(),
  line: text("line").notNull(),
});

/**
 * An endpoint's in-flight places across nodes (`max_in_flight`): slot 0..limit-1, each free
 * (holder null) or held until `expires_at`, when a node that died with it is presumed gone.
 */
export const endpointSlots = pgTable(
  "endpoint_slots",
  {
    endpoint: text("endpoint").notNull(),
    slot: integer("slot").notNull(),
    holder: text("holder"),
    expiresAt: bigint("expires_at", { mode: "number" }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.endpoint, t.slot] })],
);
