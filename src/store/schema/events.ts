import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * Canonical events (SPEC §9): the whole envelope as JSON, plus the fields the API filters on as
 * columns. Written by the ingresses in the same transaction as their processing job.
 */
export const events = sqliteTable(
  "events",
  {
    id: text("id").primaryKey(),
    tenant: text("tenant").notNull(),
    type: text("type").notNull(),
    channel: text("channel").notNull(),
    agent: text("agent"),
    binding: text("binding"),
    idempotencyKey: text("idempotency_key"),
    receivedAt: integer("received_at").notNull(),
    envelope: text("envelope", { mode: "json" }).notNull(),
    /** Spans of the pipeline (SPEC §2): name, start, duration, outcome. */
    trace: text("trace", { mode: "json" }).$type<unknown[]>().notNull(),
  },
  (t) => [
    index("events_tenant").on(t.tenant, t.id),
    index("events_type").on(t.type, t.id),
    // SPEC §3.3: a provider delivery id or Idempotency-Key makes an event unique per tenant and binding.
    uniqueIndex("events_idempotency").on(t.tenant, t.binding, t.idempotencyKey).where(sql`idempotency_key IS NOT NULL`),
  ],
);

/**
 * One delivery of one event to one target (SPEC §10). The dispatcher owns its life; the API
 * lists it. States: pending, delivering, delivered, failed, dead.
 */
export const deliveries = sqliteTable(
  "deliveries",
  {
    id: text("id").primaryKey(),
    eventId: text("event_id")
      .notNull()
      .references(() => events.id, { onDelete: "cascade" }),
    tenant: text("tenant").notNull(),
    endpoint: text("endpoint").notNull(),
    state: text("state", { enum: ["pending", "delivering", "delivered", "failed", "dead"] }).notNull(),
    attempts: integer("attempts").notNull().default(0),
    lastStatus: integer("last_status"),
    lastError: text("last_error"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("deliveries_tenant").on(t.tenant, t.id), index("deliveries_event").on(t.eventId)],
);
