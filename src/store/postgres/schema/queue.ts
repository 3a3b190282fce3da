import { sql } from "drizzle-orm";
import { bigint, bigserial, index, jsonb, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";

/**
 * The job queue. A job's life is written once, in docs/state-machines.md#jobs, and enforced in
 * src/core/queue.ts: available → leased → done | available (retry) | dead.
 * Times are milliseconds since the epoch.
 */
export const jobs = pgTable(
  "jobs",
  {
    /** The rowid, never reused (AUTOINCREMENT); shown as a `job_` seqId (src/core/ids.ts). */
    id: bigserial("id", { mode: "number" }).primaryKey(),
    kind: text("kind").notNull(),
    tenant: text("tenant"),
    payload: jsonb("payload").notNull(),
    idempotencyKey: text("idempotency_key"),
    state: text("state", { enum: ["available", "leased", "done", "dead"] }).notNull(),
    /** Attempts started so far; also the fencing token of the current lease. */
    attempt: bigint("attempt", { mode: "number" }).notNull().default(0),
    maxAttempts: bigint("max_attempts", { mode: "number" }).notNull(),
    runAt: bigint("run_at", { mode: "number" }).notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    /** Past this moment the job is dead-lettered instead of run (max age); null = no limit. */
    expiresAt: bigint("expires_at", { mode: "number" }),
    leasedAt: bigint("leased_at", { mode: "number" }),
    leaseExpiresAt: bigint("lease_expires_at", { mode: "number" }),
    leaseOwner: text("lease_owner"),
    finishedAt: bigint("finished_at", { mode: "number" }),
    lastError: text("last_error"),
    deadReason: text("dead_reason", { enum: ["max_attempts", "max_age", "permanent"] }),
  },
  (t) => [
    // The claim walks this index in order (run_at, then id = insertion order): only waiting jobs are in it.
    index("jobs_ready").on(t.runAt, t.id).where(sql`state = 'available'`),
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
export const outbox = pgTable(
  "outbox",
  {
    seq: bigserial("seq", { mode: "number" }).primaryKey(),
    id: text("id").notNull().unique(),
    topic: text("topic").notNull(),
    tenant: text("tenant"),
    payload: jsonb("payload").notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
  },
  (t) => [index("outbox_created").on(t.createdAt)],
);

export const outboxCursors = pgTable("outbox_cursors", {
  subscriber: text("subscriber").primaryKey(),
  position: bigint("position", { mode: "number" }).notNull(),
  updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
});

/** Small durable facts of the process itself (the readiness write probe, the instance id). */
export const kv = pgTable("kv", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
  updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
});
