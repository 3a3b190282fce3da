import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * The job queue. A job's life is written once, in docs/state-machines.md#jobs, and enforced in
 * src/core/queue.ts: available → leased → done | available (retry) | dead.
 * Times are milliseconds since the epoch.
 */
export const jobs = sqliteTable(
  "jobs",
  {
    /**
     * The rowid, shown as a `job_` seqId (src/core/ids.ts). Never reused without AUTOINCREMENT,
     * which updated sqlite_sequence on every enqueue: a new row gets the largest id plus one, and
     * the retention sweep never deletes the job with the largest id (migration 0019 carried
     * AUTOINCREMENT's high-water mark over).
     */
    id: integer("id").primaryKey(),
    kind: text("kind").notNull(),
    tenant: text("tenant"),
    payload: text("payload", { mode: "json" }).notNull(),
    idempotencyKey: text("idempotency_key"),
    state: text("state", { enum: ["available", "leased", "done", "dead"] }).notNull(),
    /** Attempts started so far; also the fencing token of the current lease. */
    attempt: integer("attempt").notNull().default(0),
    maxAttempts: integer("max_attempts").notNull(),
    runAt: integer("run_at").notNull(),
    createdAt: integer("created_at").notNull(),
    /** Past this moment the job is dead-lettered instead of run (max age); null = no limit. */
    expiresAt: integer("expires_at"),
    leasedAt: integer("leased_at"),
    leaseExpiresAt: integer("lease_expires_at"),
    leaseOwner: text("lease_owner"),
    finishedAt: integer("finished_at"),
    lastError: text("last_error"),
    deadReason: text("dead_reason", { enum: ["max_attempts", "max_age", "permanent"] }),
  },
  (t) => [
    // The claim walks this index in order (run_at, then id = insertion order): only waiting jobs are in it.
    index("jobs_ready").on(t.runAt).where(sql`state = 'available'`),
    index("jobs_leased").on(t.leaseExpiresAt).where(sql`state = 'leased'`),
    // Finished jobs, for depth counts and the retention sweep; enqueue does not touch it.
    index("jobs_finished").on(t.state, t.finishedAt).where(sql`state IN ('done', 'dead')`),
    uniqueIndex("jobs_idempotency").on(t.kind, t.idempotencyKey).where(sql`idempotency_key IS NOT NULL`),
  ],
);

/**
 * The transactional outbox: events a state change emits, committed in the same transaction.
 * Subscribers read it as a log, each from its own durable cursor, in commit order.
 */
export const outbox = sqliteTable(
  "outbox",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    id: text("id").notNull().unique(),
    topic: text("topic").notNull(),
    tenant: text("tenant"),
    payload: text("payload", { mode: "json" }).notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("outbox_created").on(t.createdAt)],
);

export const outboxCursors = sqliteTable("outbox_cursors", {
  subscriber: text("subscriber").primaryKey(),
  position: integer("position").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** Small durable facts of the process itself (the readiness write probe, the instance id). */
export const kv = sqliteTable("kv", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
  updatedAt: integer("updated_at").notNull(),
});
