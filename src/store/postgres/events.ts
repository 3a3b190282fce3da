import type { Envelope, Span } from "../../events/envelope.ts";
import {
  type AttemptRow,
  type DeliveryPatch,
  type DeliveryQuery,
  type DeliveryRow,
  type DeliveryState,
  EVENT_SEARCH_MAX,
  type EventPage,
  type EventQuery,
  type EventState,
  type EventStore,
  type NewAttempt,
  type NewDelivery,
  type RateQuery,
  type Rates,
  type StoredEvent,
} from "../contract.ts";
import { eventRowValues } from "../new-rows.ts";
import { rateBuckets } from "../rates.ts";
import type { PgTx } from "./committer.ts";
import { num, type PgDb } from "./db.ts";
import { Rows } from "./rows.ts";
import { deliveries, deliveryAttempts } from "./schema/index.ts";
import { spansFrom, spansJson, storedSpans } from "../spans.ts";

const deliveryRows = new Rows<DeliveryRow>(deliveries);
/** A delivery as read, its trace as the API's spans (src/store/spans.ts). */
const deliveryFrom = (r: Record<string, unknown>): DeliveryRow => {
  const d = deliveryRows.from(r);
  d.trace = spansFrom(d.trace);
  return d;
};
const attemptRows = new Rows<AttemptRow>(deliveryAttempts);

/** Just-inserted events kept in memory for routing, as on SQLite (src/store/sqlite/events.ts). */
const FRESH_BYTES = 8 * 1024 * 1024;
const FRESH_MAX_EVENT_BYTES = 64 * 1024;

/** Numbered parameters for a statement built from optional conditions. */
class Params {
  readonly values: unknown[] = [];
  p(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

const and = (conds: (string | undefined)[]): string => {
  const c = conds.filter((x): x is string => !!x);
  return c.length ? ` WHERE ${c.join(" AND ")}` : "";
};

const toStored = (r: Record<string, unknown>): StoredEvent => ({
  envelope: r.envelope as Envelope,
  trace: spansFrom(r.trace),
});

/**
 * Events and their deliveries on PostgreSQL (src/store/sqlite/events.ts is the model). Envelopes,
 * traces, routing and decisions are jsonb; a trace grows with `||`. An event without an
 * idempotency key cannot repeat, so its insert is deferred (it travels with the unit's next read
 * or its COMMIT); one with a key is inserted ON CONFLICT DO NOTHING and, when it was a repeat, the
 * original is read (across nodes too: the second insert waits for the first's commit).
 *
 * Search (`q.search`) is a case-insensitive ILIKE on the few envelope fields it covers (subject,
 * sender address and name, an SMS's number). It needs no index: `page` runs it only inside a
 * window of at most `scan` events read newest first through an index, so pg_trgm or a tsvector
 * (which would also change what matches: words, not substrings) would buy nothing.
 */
export class PgEvents implements EventStore {
  private readonly fresh = new Map<string, { envelope: Envelope; tenant: string; bytes: number }>();
  private freshBytes = 0;
  private readonly inserted = new Set<(tenant: string, id: string) => void>();

  constructor(private readonly db: PgDb) {}

  insertTx(
    tx: PgTx,
    envelope: Envelope,
    trace: readonly Span[] = [],
    routing: Record<string, unknown> | null = null,
  ): { id: string; created: boolean } {
    const e = envelope;
    const json = JSON.stringify(e);
    const params = eventRowValues(e, json, trace, routing);
    const insert =
      "INSERT INTO events (id, tenant, type, channel, agent, binding, idempotency_key, received_at, envelope, trace, " +
      "routing) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb, $11::text::jsonb)";
    if (e.idempotency_key === null || e.idempotency_key === undefined) {
      tx.conn.defer(insert, params);
    } else {
      const [created] = tx.conn.query(`${insert} ON CONFLICT DO NOTHING RETURNING id`, params);
      if (!created) {
        const [original] = tx.conn.query(
          "SELECT id FROM events WHERE tenant = $1 AND binding = $2 AND idempotency_key = $3",
          [e.tenant, e.source.binding, e.idempotency_key],
        );
        if (!original) throw new Error(`event ${e.id} was not inserted and has no idempotent original`);
        return { id: original.id as string, created: false };
      }
    }
    if (this.inserted.size) {
      const { tenant, id } = e;
      tx.afterCommit(() => {
        for (const l of this.inserted) l(tenant, id);
      });
    }
    // Routing (on this node) reads it back in a moment: hand it over from memory.
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

  async list(q: EventQuery): Promise<StoredEvent[]> {
    const ps = new Params();
    const where = and([
      q.tenants ? `events.tenant = ANY(${ps.p([...q.tenants])}::text[])` : undefined,
      q.type ? `events.type = ${ps.p(q.type)}` : undefined,
      ...unindexed(q, ps),
      q.before ? `events.id < ${ps.p(q.before)}` : undefined,
      q.after ? `events.id > ${ps.p(q.after)}` : undefined,
    ]);
    const rows = await this.db.read(
      `SELECT envelope, trace FROM events${where} ORDER BY id ${q.after ? "ASC" : "DESC"} LIMIT ${ps.p(q.limit)}`,
      ps.values,
    );
    return rows.map(toStored);
  }

  /**
   * A window of at most `scan` events walks one index newest first (the tenants', else the type's,
   * else the primary key); the other filters are checked only inside it. One statement: the page
   * and the window's extent come from one snapshot.
   */
  async page(q: Omit<EventQuery, "after"> & { scan: number }): Promise<EventPage> {
    const byTenant = !!q.tenants;
    const ps = new Params();
    const keyed = and([
      q.tenants ? `events.tenant = ANY(${ps.p([...q.tenants])}::text[])` : undefined,
      !byTenant && q.type ? `events.type = ${ps.p(q.type)}` : undefined,
      q.before ? `events.id < ${ps.p(q.before)}` : undefined,
    ]);
    const rest = [byTenant && q.type ? `events.type = ${ps.p(q.type)}` : undefined, ...unindexed(q, ps)].filter(
      (c): c is string => !!c,
    );
    const limit = Math.max(1, q.limit);
    if (rest.length === 0) {
      const rows = await this.list({ ...q, limit: limit + 1 });
      const shown = rows.slice(0, limit);
      return { events: shown, next: rows.length > limit ? shown.at(-1)!.envelope.id : null, partial: false };
    }
    const rows = await this.db.read(
      `WITH w AS (SELECT id FROM events${keyed} ORDER BY id DESC LIMIT ${ps.p(Math.max(1, q.scan))}), ` +
        "x AS (SELECT count(*) AS n, min(id) AS oldest FROM w), " +
        `m AS (SELECT events.id, events.envelope, events.trace FROM w JOIN events ON events.id = w.id${and(rest)} ` +
        `ORDER BY w.id DESC LIMIT ${ps.p(limit + 1)}) ` +
        "SELECT m.*, x.n, x.oldest FROM x LEFT JOIN m ON true ORDER BY m.id DESC",
      ps.values,
    );
    const matched = rows.filter((r) => r.id !== null && r.id !== undefined);
    const shown = matched.slice(0, limit).map(toStored);
    if (matched.length > limit) return { events: shown, next: shown.at(-1)!.envelope.id, partial: false };
    const n = rows[0] ? num(rows[0].n) : 0;
    const oldest = (rows[0]?.oldest as string | null | undefined) ?? null;
    const full = n >= q.scan;
    return { events: shown, next: full ? oldest : null, partial: full && shown.length < limit };
  }

  onInserted(listener: (tenant: string, id: string) => void): () => void {
    this.inserted.add(listener);
    return () => this.inserted.delete(listener);
  }

  async get(id: string): Promise<(StoredEvent & { tenant: string }) | null> {
    const [r] = await this.db.read("SELECT envelope, trace, tenant FROM events WHERE id = $1", [id]);
    return r ? { ...toStored(r), tenant: r.tenant as string } : null;
  }

  async deliveries(q: DeliveryQuery): Promise<DeliveryRow[]> {
    const ps = new Params();
    const where = and([
      q.tenants ? `tenant = ANY(${ps.p([...q.tenants])}::text[])` : undefined,
      q.eventId ? `event_id = ${ps.p(q.eventId)}` : undefined,
      q.endpoint ? `endpoint = ${ps.p(q.endpoint)}` : undefined,
      q.state ? `state = ${ps.p(q.state)}` : undefined,
      q.before ? `id < ${ps.p(q.before)}` : undefined,
    ]);
    const rows = await this.db.read(
      `SELECT * FROM deliveries${where} ORDER BY id DESC LIMIT ${ps.p(q.limit)}`,
      ps.values,
    );
    return rows.map(deliveryFrom);
  }

  insertDeliveryTx(tx: PgTx, r: NewDelivery): boolean {
    const insert = deliveryRows.insert(
      {
        id: r.id,
        eventId: r.eventId,
        tenant: r.tenant,
        endpoint: r.endpoint,
        route: r.route ?? null,
        state: r.state,
        attempts: r.attempts ?? 0,
        lastStatus: r.lastStatus ?? null,
        lastError: r.lastError ?? null,
        createdAt: r.createdAt,
        updatedAt: r.updatedAt,
        replayOf: r.replayOf ?? null,
        requestedBy: r.requestedBy ?? null,
        decision: r.decision ?? null,
        // Stored as tuples (src/store/spans.ts); the row's JSON columns are written as they are given.
        trace: storedSpans(r.trace ?? []) as unknown as Span[],
      },
      "ON CONFLICT DO NOTHING RETURNING id",
    );
    return tx.conn.query(insert.text, insert.params).length === 1;
  }

  deliveryTx(tx: PgTx, id: string): DeliveryRow | null {
    const [r] = tx.conn.query("SELECT * FROM deliveries WHERE id = $1", [id]);
    return r ? deliveryFrom(r) : null;
  }

  latestDeliveryTx(tx: PgTx, eventId: string, endpoint: string): DeliveryRow | null {
    const [r] = tx.conn.query(LATEST, [eventId, endpoint]);
    return r ? deliveryFrom(r) : null;
  }

  checkpointTx(tx: PgTx, row: DeliveryRow, spans: readonly Span[] = []): void {
    tx.conn.defer(
      "UPDATE deliveries SET state = $1, decision = $2::text::jsonb, approval_id = $3, attempts = $4, last_status = $5, " +
        "last_error = $6, first_attempt_at = $7, attempt_base = $8, requested_by = $9, updated_at = $10, " +
        "trace = trace || $11::text::jsonb WHERE id = $12 AND state <> 'discarded'",
      [
        row.state,
        row.decision === null ? null : JSON.stringify(row.decision),
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
      ],
    );
  }

  updateDeliveryTx(tx: PgTx, id: string, patch: DeliveryPatch, spans: readonly Span[] = []): void {
    const params: unknown[] = [id];
    const sets = deliveryRows.set({ ...patch, updatedAt: tx.now }, params);
    if (spans.length) sets.push(`trace = trace || $${params.push(spansJson(spans))}::text::jsonb`);
    tx.conn.defer(`UPDATE deliveries SET ${sets.join(", ")} WHERE id = $1`, params);
  }

  appendSpansTx(tx: PgTx, id: string, spans: readonly Span[]): void {
    tx.conn.defer("UPDATE deliveries SET trace = trace || $2::text::jsonb WHERE id = $1", [id, spansJson(spans)]);
  }

  transitionTx(tx: PgTx, id: string, from: readonly DeliveryState[], patch: DeliveryPatch): DeliveryRow | null {
    const params: unknown[] = [id, [...from]];
    const sets = deliveryRows.set({ ...patch, updatedAt: tx.now }, params);
    const [r] = tx.conn.query(
      `UPDATE deliveries SET ${sets.join(", ")} WHERE id = $1 AND state = ANY($2::text[]) RETURNING *`,
      params,
    );
    return r ? deliveryFrom(r) : null;
  }

  insertAttemptTx(tx: PgTx, a: NewAttempt): void {
    tx.conn.defer(
      "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, error, excerpt) " +
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      [
        a.deliveryId,
        a.attempt,
        a.startedAt,
        a.latencyMs,
        a.status ?? null,
        a.errorClass ?? null,
        a.error ?? null,
        a.excerpt ?? null,
      ],
    );
  }

  setRoutingTx(tx: PgTx, eventId: string, routing: Record<string, unknown>, spans: readonly Span[] = []): void {
    tx.conn.defer("UPDATE events SET routing = $2::text::jsonb, trace = trace || $3::text::jsonb WHERE id = $1", [
      eventId,
      JSON.stringify(routing),
      spansJson(spans),
    ]);
  }

  /** An event this node inserted comes from memory, once (nothing but routing sets its routing). */
  private takeFresh(id: string): { envelope: Envelope; tenant: string } | null {
    const fresh = this.fresh.get(id);
    if (!fresh) return null;
    this.fresh.delete(id);
    this.freshBytes -= fresh.bytes;
    return { envelope: fresh.envelope, tenant: fresh.tenant };
  }

  unroutedEventTx(tx: PgTx, id: string): { envelope: Envelope; tenant: string } | null {
    const fresh = this.takeFresh(id);
    if (fresh) return fresh;
    const [r] = tx.conn.query(UNROUTED, [id]);
    return r ? { envelope: r.envelope as Envelope, tenant: r.tenant as string } : null;
  }

  async getRouting(eventId: string): Promise<Record<string, unknown> | null> {
    const [r] = await this.db.read("SELECT routing FROM events WHERE id = $1", [eventId]);
    return (r?.routing as Record<string, unknown> | null | undefined) ?? null;
  }

  async getUnroutedEvent(id: string): Promise<{ envelope: Envelope; tenant: string } | null> {
    const fresh = this.takeFresh(id);
    if (fresh) return fresh;
    const [r] = await this.db.read(UNROUTED, [id]);
    return r ? { envelope: r.envelope as Envelope, tenant: r.tenant as string } : null;
  }

  async getDelivery(id: string): Promise<DeliveryRow | null> {
    const [r] = await this.db.read("SELECT * FROM deliveries WHERE id = $1", [id]);
    return r ? deliveryFrom(r) : null;
  }

  async getLatestDelivery(eventId: string, endpoint: string): Promise<DeliveryRow | null> {
    const [r] = await this.db.read(LATEST, [eventId, endpoint]);
    return r ? deliveryFrom(r) : null;
  }

  async listFirstDeliveries(eventId: string): Promise<DeliveryRow[]> {
    const rows = await this.db.read("SELECT * FROM deliveries WHERE event_id = $1 AND replay_of IS NULL", [eventId]);
    return rows.map(deliveryFrom);
  }

  async listDeliveriesOfApproval(approvalId: string): Promise<DeliveryRow[]> {
    const rows = await this.db.read("SELECT * FROM deliveries WHERE approval_id = $1", [approvalId]);
    return rows.map(deliveryFrom);
  }

  async countDeliveries(tenant: string, endpoint: string): Promise<Record<string, number>> {
    const rows = await this.db.read(
      "SELECT state, count(*) AS n FROM deliveries WHERE tenant = $1 AND endpoint = $2 GROUP BY state",
      [tenant, endpoint],
    );
    return Object.fromEntries(rows.map((r) => [r.state as string, num(r.n)]));
  }

  async listAttempts(deliveryId: string): Promise<AttemptRow[]> {
    const rows = await this.db.read("SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt", [
      deliveryId,
    ]);
    return rows.map(attemptRows.from);
  }

  /** Two grouped counts over index ranges on time (events_received; deliveries_state_updated). */
  async rates(q: RateQuery): Promise<Rates> {
    const n = rateBuckets(q);
    const since = Math.floor(q.since);
    const until = Math.floor(q.until);
    const bucketMs = Math.floor(q.bucketMs);
    const zeros = () => new Array<number>(n).fill(0);
    const out: Rates = { events: zeros(), delivered: zeros(), dead: zeros() };
    if (q.tenants && q.tenants.length === 0) return out;
    const tenants = q.tenants ? " AND tenant = ANY($4::text[])" : "";
    const params = q.tenants ? [since, until, bucketMs, [...q.tenants]] : [since, until, bucketMs];
    const [received, settled] = await Promise.all([
      this.db.read(
        "SELECT (received_at - $1) / $3 AS b, count(*) AS n FROM events " +
          `WHERE received_at >= $1 AND received_at < $2${tenants} GROUP BY b`,
        params,
      ),
      this.db.read(
        "SELECT state, (updated_at - $1) / $3 AS b, count(*) AS n FROM deliveries " +
          `WHERE state IN ('delivered', 'dead') AND updated_at >= $1 AND updated_at < $2${tenants} GROUP BY state, b`,
        params,
      ),
    ]);
    for (const r of received) out.events[num(r.b)] = num(r.n);
    for (const r of settled) (r.state === "delivered" ? out.delivered : out.dead)[num(r.b)] = num(r.n);
    return out;
  }
}

const LATEST = "SELECT * FROM deliveries WHERE event_id = $1 AND endpoint = $2 ORDER BY id DESC LIMIT 1";
const UNROUTED = "SELECT envelope, tenant FROM events WHERE id = $1 AND routing IS NULL";

/** Deliveries of the event in the outer query in one of `states` (the deliveries_event index). */
const deliveryIn = (states: readonly DeliveryState[]) =>
  `EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.state IN (${states.map((s) => `'${s}'`).join(", ")}))`;

/** Not yet settled, or settled as a failure: an event with one of these is not `delivered`. */
const UNFINISHED: readonly DeliveryState[] = ["pending", "awaiting_approval", "delivering", "retrying", "dead"];

function stateIs(state: EventState): string {
  switch (state) {
    case "delivered":
      return `(${deliveryIn(["delivered"])} AND NOT ${deliveryIn(UNFINISHED)})`;
    case "failing":
      return deliveryIn(["retrying"]);
    case "dead":
      return deliveryIn(["dead"]);
    case "awaiting_approval":
      return deliveryIn(["awaiting_approval"]);
    case "none":
      return "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)";
  }
}

/** `search` as an ILIKE on the envelope fields it covers; % and _ are plain characters. */
function searchIs(search: string, ps: Params): string {
  const pattern = ps.p(`%${search.slice(0, EVENT_SEARCH_MAX).replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
  const like = (path: string) => `(events.envelope #>> '${path}') ILIKE ${pattern} ESCAPE '\\'`;
  return (
    `(${like("{data,subject}")} OR ${like("{data,from,address}")} OR ${like("{data,from,name}")} OR ` +
    `(jsonb_typeof(events.envelope #> '{data,from}') = 'string' AND ${like("{data,from}")}))`
  );
}

/** The filters no index serves (checked inside `page`'s window). */
const unindexed = (q: EventQuery, ps: Params): (string | undefined)[] => [
  q.channel ? `events.channel = ${ps.p(q.channel)}` : undefined,
  q.since !== undefined ? `events.received_at >= ${ps.p(q.since)}` : undefined,
  q.until !== undefined ? `events.received_at <= ${ps.p(q.until)}` : undefined,
  q.state ? stateIs(q.state) : undefined,
  q.search ? searchIs(q.search, ps) : undefined,
];
