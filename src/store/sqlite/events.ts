import {
  type AnyColumn,
  and,
  asc,
  count,
  desc,
  eq,
  gt,
  gte,
  inArray,
  isNull,
  lt,
  lte,
  type SQL,
  sql,
} from "drizzle-orm";
import { idFloor } from "../../core/ids.ts";
import { jsonOnce } from "../../core/json-once.ts";
import type { Envelope, Span } from "../../events/envelope.ts";
import type {
  AttemptRow,
  DeliveryPatch,
  DeliveryQuery,
  DeliveryRow,
  DeliveryState,
  EventPage,
  EventQuery,
  EventState,
  EventStore,
  NewAttempt,
  NewDelivery,
  RateQuery,
  Rates,
  StoredEvent,
} from "../contract.ts";
import { deliveries, deliveryAttempts, events } from "../schema/index.ts";
import type { Db, SqliteHandle } from "../sqlite.ts";
import { EVENT_SEARCH_MAX } from "../contract.ts";
import { eventRowValues } from "../new-rows.ts";
import { rateBuckets } from "../rates.ts";
import type { SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";
import { spansJson } from "../spans.ts";

// The contract's rows are the tables' rows: checked here, so a column change shows in both.
same<Same<DeliveryRow, typeof deliveries.$inferSelect>>(true);
same<Same<AttemptRow, typeof deliveryAttempts.$inferSelect>>(true);

/**
 * Just-inserted events kept in memory for routing, by their JSON's size: a backlog beyond reads
 * the rows, and so does an event too big to be worth keeping (a long mail).
 */
const FRESH_BYTES = 8 * 1024 * 1024;
const FRESH_MAX_EVENT_BYTES = 64 * 1024;

/**
 * Events and their deliveries. Ingresses insert inside their unit of work, so an event and its
 * processing job commit together (docs/architecture.md); the API reads.
 *
 * The synchronous reads outside a unit (`delivery`, `latestDelivery`, `deliveryCounts`,
 * `firstDeliveries`, `deliveriesOfApproval`, `attempts`, `unroutedEvent`, `routing`) are SQLite's
 * only, for the callers that have not moved to the contract's asynchronous reads yet.
 */
export class SqliteEvents implements EventStore {
  private readonly db: Db;
  private readonly sqlite: SqliteHandle["sqlite"];
  // The ingress hot path: raw statements, prepared once (drizzle's builder prepares per call).
  private readonly insert;
  private readonly original;
  // The dispatcher's hot path, prepared once too.
  private readonly byId;
  private readonly deliveryById;
  private readonly routingOf;
  private readonly unrouted;
  /** Events inserted by this process and not yet routed, newest last (bounded). */
  private readonly fresh = new Map<string, { envelope: Envelope; tenant: string; bytes: number }>();
  private freshBytes = 0;
  private readonly inserted = new Set<(tenant: string, id: string) => void>();
  private readonly insertDelivery;
  private readonly checkpoint;
  private readonly addSpans;
  private readonly setRouting;
  private readonly insertAttempt;

  constructor(handle: SqliteHandle) {
    this.db = handle.db;
    this.sqlite = handle.sqlite;
    const db = handle.db;
    const sqlite = handle.sqlite;
    this.byId = db
      .select({ envelope: events.envelope, trace: events.trace, tenant: events.tenant })
      .from(events)
      .where(eq(events.id, sql.placeholder("id")))
      .prepare();
    this.deliveryById = db
      .select()
      .from(deliveries)
      .where(eq(deliveries.id, sql.placeholder("id")))
      .prepare();
    this.routingOf = db
      .select({ routing: events.routing })
      .from(events)
      .where(eq(events.id, sql.placeholder("id")))
      .prepare();
    this.unrouted = db
      .select({ envelope: events.envelope, tenant: events.tenant })
      .from(events)
      .where(and(eq(events.id, sql.placeholder("id")), isNull(events.routing)))
      .prepare();
    this.insertDelivery = sqlite.prepare<
      never,
      [
        string,
        string,
        string,
        string,
        string | null,
        string,
        number,
        number | null,
        string | null,
        number,
        number,
        string | null,
        string | null,
        string | null,
        string,
      ]
    >(
      "INSERT INTO deliveries (id, event_id, tenant, endpoint, route, state, attempts, last_status, last_error, " +
        "created_at, updated_at, replay_of, requested_by, decision, trace) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    // A checkpoint writes the whole row as the dispatcher holds it, and appends spans. A delivery
    // an operator discarded meanwhile stays discarded.
    this.checkpoint = sqlite.prepare<
      never,
      [
        string,
        string | null,
        string | null,
        number,
        number | null,
        string | null,
        number | null,
        number,
        string | null,
        number,
        string,
        string,
      ]
    >(
      "UPDATE deliveries SET state = ?, decision = ?, approval_id = ?, attempts = ?, last_status = ?, " +
        "last_error = ?, first_attempt_at = ?, attempt_base = ?, requested_by = ?, updated_at = ?, " +
        `trace = ${APPEND("trace", "?11")} WHERE id = ?12 AND state != 'discarded'`,
    );
    this.addSpans = sqlite.prepare<never, [string, string]>(
      `UPDATE deliveries SET trace = ${APPEND("trace", "?1")} WHERE id = ?2`,
    );
    this.setRouting = sqlite.prepare<never, [string, string, string]>(
      `UPDATE events SET routing = ?1, trace = ${APPEND("trace", "?2")} WHERE id = ?3`,
    );
    this.insertAttempt = sqlite.prepare<
      never,
      [string, number, number, number, number | null, string | null, string | null, string | null]
    >(
      "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, error, " +
        "excerpt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    // Without RETURNING (as the queue's insert): the change count says whether the row went in.
    this.insert = handle.sqlite.prepare<
      never,
      [string, string, string, string, string | null, string, string | null, number, string, string, string | null]
    >(
      "INSERT INTO events (id, tenant, type, channel, agent, binding, idempotency_key, received_at, envelope, trace, " +
        "routing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.original = handle.sqlite.prepare<{ id: string }, [string, string, string]>(
      "SELECT id FROM events WHERE tenant = ? AND binding = ? AND idempotency_key = ?",
    );
  }

  /**
   * Insert an event unless its idempotency key was seen for this tenant and binding: then the
   * original id. `routing` is set when the event is routed in this same unit of work
   * (src/events/handoff.ts); without it the event waits for the router.
   */
  insertTx(
    _tx: SqliteTx,
    envelope: Envelope,
    trace: readonly Span[] = [],
    routing: Record<string, unknown> | null = null,
  ): { id: string; created: boolean } {
    const e = envelope;
    const json = jsonOnce(e);
    const inserted = this.insert.run(...eventRowValues(e, json, trace, routing)).changes === 1;
    if (inserted) {
      if (this.inserted.size) {
        const { tenant, id } = e;
        _tx.afterCommit(() => {
          for (const l of this.inserted) l(tenant, id);
        });
      }
      // Routing reads it back in a moment: hand it over from memory. Should this unit roll back,
      // the entry is never asked for (ids are unique) and ages out.
      if (!routing && json.length <= FRESH_MAX_EVENT_BYTES && !this.fresh.has(e.id)) {
        this.fresh.set(e.id, { envelope: e, tenant: e.tenant, bytes: json.length });
        this.freshBytes += json.length;
        for (const [id, old] of this.fresh) {
          if (this.freshBytes <= FRESH_BYTES) break;
          this.fresh.delete(id);
          this.freshBytes -= old.bytes;
        }
      }
      return { id: e.id, created: true };
    }
    const original = this.original.get(e.tenant, e.source.binding, e.idempotency_key ?? "");
    if (!original) throw new Error(`event ${e.id} was not inserted and has no idempotent original`);
    return { id: original.id, created: false };
  }

  async list(q: EventQuery): Promise<StoredEvent[]> {
    const where: (SQL | undefined)[] = [
      q.tenants ? inArray(events.tenant, [...q.tenants]) : undefined,
      q.type ? eq(events.type, q.type) : undefined,
      ...unindexed(q),
      q.before ? lt(events.id, q.before) : undefined,
      q.after ? gt(events.id, q.after) : undefined,
    ];
    return this.db
      .select({ envelope: events.envelope, trace: events.trace })
      .from(events)
      .where(and(...where))
      .orderBy(q.after ? asc(events.id) : desc(events.id))
      .limit(q.limit)
      .all() as StoredEvent[];
  }

  /**
   * A window of at most `scan` events walks one index newest first (the tenants' index, else the
   * type's, else the primary key); the other filters are checked only inside it. Without such
   * filters the page is `list`'s plain keyset read.
   */
  async page(q: Omit<EventQuery, "after"> & { scan: number }): Promise<EventPage> {
    const byTenant = !!q.tenants;
    const keyed: (SQL | undefined)[] = [
      q.tenants ? inArray(events.tenant, [...q.tenants]) : undefined,
      !byTenant && q.type ? eq(events.type, q.type) : undefined,
      q.before ? lt(events.id, q.before) : undefined,
    ];
    const rest = [byTenant && q.type ? eq(events.type, q.type) : undefined, ...unindexed(q)].filter(
      (c): c is SQL => c !== undefined,
    );
    const limit = Math.max(1, q.limit);
    if (rest.length === 0) {
      const rows = await this.list({ ...q, limit: limit + 1 });
      const shown = rows.slice(0, limit);
      return { events: shown, next: rows.length > limit ? shown.at(-1)!.envelope.id : null, partial: false };
    }
    const window = this.db
      .select({ id: events.id })
      .from(events)
      .where(and(...keyed))
      .orderBy(desc(events.id))
      .limit(Math.max(1, q.scan))
      .as("w");
    const rows = this.db
      .select({ envelope: events.envelope, trace: events.trace, id: events.id })
      .from(window)
      .innerJoin(events, eq(events.id, window.id))
      .where(and(...rest))
      .orderBy(desc(window.id))
      .limit(limit + 1)
      .all() as (StoredEvent & { id: string })[];
    const shown = rows.slice(0, limit).map(({ envelope, trace }) => ({ envelope, trace }));
    if (rows.length > limit) return { events: shown, next: shown.at(-1)!.envelope.id, partial: false };
    const extent = this.db
      .select({ n: count(), oldest: sql<string | null>`min(${window.id})` })
      .from(window)
      .get();
    const full = (extent?.n ?? 0) >= q.scan;
    return { events: shown, next: full ? (extent?.oldest ?? null) : null, partial: full && shown.length < limit };
  }

  onInserted(listener: (tenant: string, id: string) => void): () => void {
    this.inserted.add(listener);
    return () => this.inserted.delete(listener);
  }

  async get(id: string): Promise<(StoredEvent & { tenant: string }) | null> {
    const row = this.byId.get({ id });
    return (row as (StoredEvent & { tenant: string }) | undefined) ?? null;
  }

  /** Newest first, like events; `before` is the cursor. */
  async deliveries(q: DeliveryQuery): Promise<DeliveryRow[]> {
    return this.db
      .select()
      .from(deliveries)
      .where(
        and(
          q.tenants ? inArray(deliveries.tenant, [...q.tenants]) : undefined,
          q.eventId ? eq(deliveries.eventId, q.eventId) : undefined,
          q.endpoint ? eq(deliveries.endpoint, q.endpoint) : undefined,
          q.state ? eq(deliveries.state, q.state as DeliveryRow["state"]) : undefined,
          q.before ? lt(deliveries.id, q.before) : undefined,
        ),
      )
      .orderBy(desc(deliveries.id))
      .limit(q.limit)
      .all();
  }

  /** How many deliveries to one endpoint are in each state. */
  deliveryCounts(tenant: string, endpoint: string): Record<string, number> {
    const rows = this.db
      .select({ state: deliveries.state, n: count() })
      .from(deliveries)
      .where(and(eq(deliveries.tenant, tenant), eq(deliveries.endpoint, endpoint)))
      .groupBy(deliveries.state)
      .all();
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  /** The newest delivery of an event to an endpoint (the one a replay repeats), if any. */
  latestDelivery(eventId: string, endpoint: string): DeliveryRow | null {
    return (
      this.db
        .select()
        .from(deliveries)
        .where(and(eq(deliveries.eventId, eventId), eq(deliveries.endpoint, endpoint)))
        .orderBy(desc(deliveries.id))
        .limit(1)
        .get() ?? null
    );
  }

  /** The first deliveries (not replays) of an event. */
  firstDeliveries(eventId: string): DeliveryRow[] {
    return this.db
      .select()
      .from(deliveries)
      .where(and(eq(deliveries.eventId, eventId), isNull(deliveries.replayOf)))
      .all();
  }

  /** A new delivery (already decided, with its first spans, when routing decided it); false when the event already has one to that endpoint. */
  insertDeliveryTx(_tx: SqliteTx, r: NewDelivery): boolean {
    const run = this.insertDelivery.run(
      r.id,
      r.eventId,
      r.tenant,
      r.endpoint,
      r.route ?? null,
      r.state,
      r.attempts ?? 0,
      r.lastStatus ?? null,
      r.lastError ?? null,
      r.createdAt,
      r.updatedAt,
      r.replayOf ?? null,
      r.requestedBy ?? null,
      r.decision ? jsonOnce(r.decision) : null,
      spansJson(r.trace ?? []),
    );
    return run.changes === 1;
  }

  delivery(id: string): DeliveryRow | null {
    return this.deliveryById.get({ id }) ?? null;
  }

  /** The dispatcher's checkpoint: `row` as it now is (its trace is not written), plus `spans` appended. */
  checkpointTx(tx: SqliteTx, row: DeliveryRow, spans: readonly Span[] = []): void {
    this.checkpoint.run(
      row.state,
      row.decision === null ? null : jsonOnce(row.decision),
      row.approvalId,
      row.attempts,
      row.lastStatus,
      row.lastError,
      row.firstAttemptAt,
      row.attemptBase,
      row.requestedBy,
      tx.now,
      spansJson(spans),
      row.id,
    );
  }

  deliveriesOfApproval(approvalId: string): DeliveryRow[] {
    return this.db.select().from(deliveries).where(eq(deliveries.approvalId, approvalId)).all();
  }

  /** A checkpoint of a delivery; `spans` are appended to its trace in the same statement. */
  updateDeliveryTx(tx: SqliteTx, id: string, patch: DeliveryPatch, spans: readonly Span[] = []): void {
    const set: Record<string, unknown> = { ...patch, updatedAt: tx.now };
    if (spans.length) {
      const added = spansJson(spans);
      const joined = sql`substr(${deliveries.trace}, 1, length(${deliveries.trace}) - 1) || ',' || substr(${added}, 2)`;
      set.trace = sql`CASE WHEN ${deliveries.trace} = '[]' THEN ${added} ELSE ${joined} END`;
    }
    tx.db.update(deliveries).set(set).where(eq(deliveries.id, id)).run();
  }

  /** Spans of a delivery that came after its last checkpoint. */
  appendSpansTx(_tx: SqliteTx, id: string, spans: readonly Span[]): void {
    this.addSpans.run(spansJson(spans), id);
  }

  /** Move a delivery on from one of `from` (an operator's retry or discard): the new row, or null when it was in another state. */
  transitionTx(tx: SqliteTx, id: string, from: readonly DeliveryState[], patch: DeliveryPatch): DeliveryRow | null {
    return (
      tx.db
        .update(deliveries)
        .set({ ...patch, updatedAt: tx.now })
        .where(and(eq(deliveries.id, id), inArray(deliveries.state, [...from])))
        .returning()
        .get() ?? null
    );
  }

  insertAttemptTx(_tx: SqliteTx, a: NewAttempt): void {
    this.insertAttempt.run(
      a.deliveryId,
      a.attempt,
      a.startedAt,
      a.latencyMs,
      a.status ?? null,
      a.errorClass ?? null,
      a.error ?? null,
      a.excerpt ?? null,
    );
  }

  attempts(deliveryId: string): AttemptRow[] {
    return this.db
      .select()
      .from(deliveryAttempts)
      .where(eq(deliveryAttempts.deliveryId, deliveryId))
      .orderBy(asc(deliveryAttempts.attempt))
      .all();
  }

  setRoutingTx(_tx: SqliteTx, eventId: string, routing: Record<string, unknown>, spans: readonly Span[] = []): void {
    this.setRouting.run(JSON.stringify(routing), spansJson(spans), eventId);
  }

  /**
   * The event, unless it was routed already (routing's read: one statement). An event this
   * process inserted comes from memory, once: nothing but routing sets its routing, so it is
   * unrouted the first time it is asked for; a second ask (a retried batch) reads the row.
   */
  unroutedEvent(id: string): { envelope: Envelope; tenant: string } | null {
    const fresh = this.fresh.get(id);
    if (fresh) {
      this.fresh.delete(id);
      this.freshBytes -= fresh.bytes;
      return { envelope: fresh.envelope, tenant: fresh.tenant };
    }
    return (this.unrouted.get({ id }) as { envelope: Envelope; tenant: string } | undefined) ?? null;
  }

  routing(eventId: string): Record<string, unknown> | null {
    return this.routingOf.get({ id: eventId })?.routing ?? null;
  }

  // ---- the contract's reads: inside a unit of work, or asynchronous ---------------------------
  // One connection: a read inside a unit sees its transaction with the same statements.

  unroutedEventTx(_tx: SqliteTx, id: string): { envelope: Envelope; tenant: string } | null {
    return this.unroutedEvent(id);
  }

  deliveryTx(_tx: SqliteTx, id: string): DeliveryRow | null {
    return this.delivery(id);
  }

  latestDeliveryTx(_tx: SqliteTx, eventId: string, endpoint: string): DeliveryRow | null {
    return this.latestDelivery(eventId, endpoint);
  }

  async getRouting(eventId: string): Promise<Record<string, unknown> | null> {
    return this.routing(eventId);
  }

  async getUnroutedEvent(id: string): Promise<{ envelope: Envelope; tenant: string } | null> {
    return this.unroutedEvent(id);
  }

  async getDelivery(id: string): Promise<DeliveryRow | null> {
    return this.delivery(id);
  }

  async getLatestDelivery(eventId: string, endpoint: string): Promise<DeliveryRow | null> {
    return this.latestDelivery(eventId, endpoint);
  }

  async listFirstDeliveries(eventId: string): Promise<DeliveryRow[]> {
    return this.firstDeliveries(eventId);
  }

  async listDeliveriesOfApproval(approvalId: string): Promise<DeliveryRow[]> {
    return this.deliveriesOfApproval(approvalId);
  }

  async countDeliveries(tenant: string, endpoint: string): Promise<Record<string, number>> {
    return this.deliveryCounts(tenant, endpoint);
  }

  async listAttempts(deliveryId: string): Promise<AttemptRow[]> {
    return this.attempts(deliveryId);
  }

  /**
   * Events: one count per bucket over an id range (an event's id carries its received_at:
   * newEnvelope makes both from one clock reading, and ids sort by time), read from the primary
   * key's index, or from events_tenant for named tenants; no table row is read. An index on
   * received_at for this alone cost every ingress a sixth B-tree (migration 0018,
   * docs/performance.md). Deliveries: one grouped count over deliveries_state_updated, one range
   * per state, which also holds the tenant.
   */
  async rates(q: RateQuery): Promise<Rates> {
    const n = rateBuckets(q);
    const since = Math.floor(q.since);
    const until = Math.floor(q.until);
    const bucketMs = Math.floor(q.bucketMs);
    const zeros = () => new Array<number>(n).fill(0);
    const out: Rates = { events: zeros(), delivered: zeros(), dead: zeros() };
    if (q.tenants && q.tenants.length === 0) return out;
    const inTenants = (column: AnyColumn) =>
      q.tenants
        ? sql` AND ${column} IN (${sql.join(
            q.tenants.map((t) => sql`${t}`),
            sql`, `,
          )})`
        : sql``;
    const tenants = q.tenants ?? [];
    const count = this.sqlite.query<{ n: number }, string[]>(eventsInRangeSql(tenants.length));
    for (let b = 0; b < n; b++) {
      const from = idFloor("evt", since + b * bucketMs);
      const to = idFloor("evt", Math.min(since + (b + 1) * bucketMs, until));
      out.events[b] = count.get(...tenants, from, to)?.n ?? 0;
    }
    const settled = this.db.all<{ state: string; b: number; n: number }>(
      sql`SELECT ${deliveries.state} AS state, (${deliveries.updatedAt} - ${since}) / ${bucketMs} AS b, count(*) AS n FROM ${deliveries} INDEXED BY deliveries_state_updated WHERE ${deliveries.state} IN ('delivered', 'dead') AND ${deliveries.updatedAt} >= ${since} AND ${deliveries.updatedAt} < ${until}${inTenants(deliveries.tenant)} GROUP BY state, b`,
    );
    for (const r of settled) (r.state === "delivered" ? out.delivered : out.dead)[r.b] = r.n;
    return out;
  }
}

/**
 * The events of an id range (`id >= ? AND id < ?`), of `tenants` tenants named first (none: every
 * tenant's), counted from the primary key's index or events_tenant without reading a row.
 */
export const eventsInRangeSql = (tenants: number): string =>
  tenants
    ? `SELECT count(*) AS n FROM events INDEXED BY events_tenant WHERE tenant IN (${Array(tenants).fill("?").join(", ")}) AND id >= ? AND id < ?`
    : "SELECT count(*) AS n FROM events WHERE id >= ? AND id < ?";

/**
 * SQL for a JSON array column with the JSON array `param` appended: the text of both arrays
 * joined (the stored arrays are compact JSON, written by JSON.stringify or json_insert).
 */
export function APPEND(column: string, param: string): string {
  return (
    `CASE WHEN ${param} = '[]' THEN ${column} WHEN ${column} = '[]' THEN ${param} ` +
    `ELSE substr(${column}, 1, length(${column}) - 1) || ',' || substr(${param}, 2) END`
  );
}

/** Deliveries of the event in the outer query, in one of `states` (the deliveries_event_endpoint index). */
const deliveryIn = (states: readonly DeliveryState[]) =>
  sql`EXISTS (SELECT 1 FROM ${deliveries} WHERE ${deliveries.eventId} = ${events.id} AND ${deliveries.state} IN (${sql.join(
    states.map((s) => sql`${s}`),
    sql`, `,
  )}))`;

/** Not yet settled, or settled as a failure: an event with one of these is not `delivered`. */
const UNFINISHED: readonly DeliveryState[] = ["pending", "awaiting_approval", "delivering", "retrying", "dead"];

function stateIs(state: EventState): SQL {
  switch (state) {
    case "delivered":
      return sql`(${deliveryIn(["delivered"])} AND NOT ${deliveryIn(UNFINISHED)})`;
    case "failing":
      return deliveryIn(["retrying"]);
    case "dead":
      return deliveryIn(["dead"]);
    case "awaiting_approval":
      return deliveryIn(["awaiting_approval"]);
    case "none":
      return sql`NOT EXISTS (SELECT 1 FROM ${deliveries} WHERE ${deliveries.eventId} = ${events.id})`;
  }
}

/**
 * `search` as a LIKE on the few envelope fields it covers. SQLite parses the envelope once per
 * row for all of them (its JSON cache); `page` bounds how many rows that is.
 */
function searchIs(search: string): SQL {
  const pattern = `%${search.slice(0, EVENT_SEARCH_MAX).replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const like = (path: string) => sql`json_extract(${events.envelope}, ${path}) LIKE ${pattern} ESCAPE '\\'`;
  return sql`(${like("$.data.subject")} OR ${like("$.data.from.address")} OR ${like("$.data.from.name")} OR (json_type(${events.envelope}, '$.data.from') = 'text' AND ${like("$.data.from")}))`;
}

/**
 * The filters no index serves. A list reads newest first by id and stops at its limit; the time
 * bounds' unary `+` keeps SQLite off any index on received_at (there is none since migration
 * 0018): a time range read through one would read every row in the range and sort them.
 */
const receivedAt = sql`+${events.receivedAt}`;
const unindexed = (q: EventQuery): (SQL | undefined)[] => [
  q.channel ? eq(events.channel, q.channel) : undefined,
  q.since !== undefined ? gte(receivedAt, q.since) : undefined,
  q.until !== undefined ? lte(receivedAt, q.until) : undefined,
  q.state ? stateIs(q.state) : undefined,
  q.search ? searchIs(q.search) : undefined,
];
