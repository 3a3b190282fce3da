import { sql } from "drizzle-orm";
import { customType, index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import type { Span } from "../../events/envelope.ts";
import { DELIVERY_STATES } from "../contract.ts";
import { spansFrom, spansJson } from "../spans.ts";

/** A trace: text holding its spans in their stored form (src/store/spans.ts), read back as the API's spans. */
export const traceText = customType<{ data: Span[]; driverData: string }>({
  dataType: () => "text",
  toDriver: (spans) => spansJson(spans),
  fromDriver: (text) => spansFrom(JSON.parse(text)),
});

/**
 * Canonical events (docs/envelope.md): the whole envelope as JSON, plus the fields the API filters on as
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
    /** Spans of the pipeline (docs/architecture.md): name, start, duration, outcome, detail. */
    trace: traceText("trace").notNull(),
    /** What routing decided: {matched, used_default, unrouted, at}; null until routed. */
    routing: text("routing", { mode: "json" }).$type<Record<string, unknown>>(),
  },
  (t) => [
    index("events_tenant").on(t.tenant, t.id),
    index("events_type").on(t.type, t.id),
    // No index on received_at: the dashboard's rates count id ranges (an id carries its time), so
    // an ingress writes one B-tree fewer (migration 0018, SqliteEvents.rates).
    // guarantee 3 (docs/guarantees.md): a provider delivery id or Idempotency-Key makes an event unique per tenant and binding.
    uniqueIndex("events_idempotency").on(t.tenant, t.binding, t.idempotencyKey).where(sql`idempotency_key IS NOT NULL`),
  ],
);

/**
 * One delivery of one event to one target (docs/state-machines.md), the dispatcher's task (docs/architecture.md): its
 * state is its checkpoint; its states are the contract's DELIVERY_STATES.
 */
export { DELIVERY_STATES };

export const deliveries = sqliteTable(
  "deliveries",
  {
    id: text("id").primaryKey(),
    eventId: text("event_id")
      .notNull()
      .references(() => events.id, { onDelete: "cascade" }),
    tenant: text("tenant").notNull(),
    endpoint: text("endpoint").notNull(),
    state: text("state", { enum: DELIVERY_STATES }).notNull(),
    attempts: integer("attempts").notNull().default(0),
    lastStatus: integer("last_status"),
    lastError: text("last_error"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    /** The route that sent the event here. */
    route: text("route"),
    /** The policy decision: {effect, policy, version, rule, reason}. */
    decision: text("decision", { mode: "json" }).$type<Record<string, unknown>>(),
    approvalId: text("approval_id"),
    firstAttemptAt: integer("first_attempt_at"),
    /** A replay: the delivery of this event to this endpoint that it repeats (null: the first one). */
    replayOf: text("replay_of"),
    /** Who asked for the replay, or for the latest retry of this dead delivery. */
    requestedBy: text("requested_by"),
    /** Attempts made before the latest retry: max_attempts counts from here. */
    attemptBase: integer("attempt_base").notNull().default(0),
    /** Spans of this task (policy.eval, state.store, secrets.lease, audit.log, delivery): part of the event's trace. */
    trace: traceText("trace").notNull().default(sql`'[]'`),
  },
  (t) => [
    index("deliveries_tenant").on(t.tenant, t.id),
    // One first delivery per (event, target): routing an event twice (the outbox is at-least-once)
    // adds nothing. Replays are further deliveries, each linked to the one it repeats, each its own
    // key (its id). Every delivery is in it, so it is also the event's index: the event page, a
    // replay's lookup, the state filters of the event list and the retention's cascade read it.
    uniqueIndex("deliveries_event_endpoint").on(
      t.eventId,
      t.endpoint,
      sql`(CASE WHEN ${sql.identifier("replay_of")} IS NULL THEN '' ELSE ${sql.identifier("id")} END)`,
    ),
    index("deliveries_state").on(t.state, t.id),
    // Only a delivery that waits or waited for a person has an approval: the others stay out of it.
    index("deliveries_approval").on(t.approvalId).where(sql`approval_id IS NOT NULL`),
    // The dashboard's rates: delivered and dead deliveries by the time they got there, from the index
    // alone. Only those: a delivery on its way is not in it, so its checkpoints do not move it there.
    index("deliveries_state_updated").on(t.state, t.updatedAt, t.tenant).where(sql`state IN ('delivered', 'dead')`),
  ],
);

/** Every attempt of a delivery (docs/state-machines.md): when, how long, what came back or why it failed. */
export const deliveryAttempts = sqliteTable(
  "delivery_attempts",
  {
    // The rowid, without AUTOINCREMENT: nothing needs an id never used before (retention sweeps in
    // id order, which a rowid keeps), and AUTOINCREMENT updated sqlite_sequence with every attempt
    // recorded (migration 0017; docs/performance.md).
    id: integer("id").primaryKey(),
    deliveryId: text("delivery_id")
      .notNull()
      .references(() => deliveries.id, { onDelete: "cascade" }),
    attempt: integer("attempt").notNull(),
    startedAt: integer("started_at").notNull(),
    latencyMs: integer("latency_ms").notNull(),
    status: integer("status"),
    errorClass: text("error_class"),
    error: text("error"),
    excerpt: text("excerpt"),
  },
  (t) => [index("delivery_attempts_delivery").on(t.deliveryId, t.attempt)],
);
