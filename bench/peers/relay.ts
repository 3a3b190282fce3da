/**
 * The dispatch benchmark's references: the least a relay from an ingress to a receiver can do.
 * `bun relay.ts PORT RECEIVER_URL` takes a POST, answers 202 with an event id, and POSTs an
 * envelope of the body, signed per Standard Webhooks, to the receiver with fetch: no storage at
 * all, the ceiling of any relay on this machine. `bun relay.ts PORT RECEIVER_URL DIR` is the
 * durable floor: before the 202 the event, its delivery and the attempt's audit entry (chained
 * by an HMAC of the previous one) share one group commit (WAL, synchronous=FULL), and after the
 * receiver's answer the attempt and the delivery's new state share another: the two commits per
 * event that docs/state-machines.md cannot do without (nothing acknowledged unstored, an audit entry before
 * every attempt, every attempt recorded). No routing, policy, jobs, spans, retries or metrics.
 *
 * `bun relay.ts PORT RECEIVER_URL DIR schema` is the same floor on agentowl's own database: its
 * tables and indexes (the real migrations, opened as the appliance opens it) and rows the size and
 * shape of the ones the appliance writes for a dispatched webhook (the envelope with its headers,
 * the stored spans, the routing record, the decision, the chained audit entry). Same two group
 * commits, same five statements; still no routing, policy, spans measured, retries or metrics. The
 * appliance beside this tells how much of its distance to the floor above is its storage (what it
 * keeps for the API, the console and recovery) and how much its code.
 */
import { Database } from "bun:sqlite";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import { newId } from "../../src/core/ids.ts";
import { spanOf } from "../../src/events/envelope.ts";
import { migrate } from "../../src/store/migrate.ts";
import { spansJson } from "../../src/store/spans.ts";
import { APPEND } from "../../src/store/sqlite/events.ts";
import { openDatabase } from "../../src/store/sqlite.ts";

const [port, target, dir, mode] = [Number(process.argv[2]), process.argv[3]!, process.argv[4], process.argv[5]];
/** The bench's signing secret (bench/dispatch.ts). */
const KEY = Buffer.from(Buffer.from("bench-dispatch-signing-secret-32b").toString("base64"), "base64");

/** A group commit of synchronous units: one transaction per turn of the event loop. */
function groupCommit(db: Database): (work: () => void) => Promise<void> {
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  let pending: { work: () => void; resolve: () => void }[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const batch = pending;
    pending = [];
    begin.run();
    for (const p of batch) p.work();
    commit.run();
    for (const p of batch) p.resolve();
  };
  return (work) =>
    new Promise<void>((resolve) => {
      pending.push({ work, resolve });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}

/** The durable floor's tables and statements, and its group commit. */
function openStore(dir: string) {
  const db = new Database(join(dir, "relay.db"), { create: true, strict: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA synchronous = FULL");
  db.exec(`CREATE TABLE events (id text PRIMARY KEY NOT NULL, tenant text NOT NULL, type text NOT NULL, received_at integer NOT NULL, envelope text NOT NULL);
CREATE INDEX events_tenant ON events (tenant, id);
CREATE TABLE deliveries (id text PRIMARY KEY NOT NULL, event_id text NOT NULL, state text NOT NULL, attempts integer NOT NULL, updated_at integer NOT NULL);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE TABLE audit (seq integer PRIMARY KEY, at integer NOT NULL, entry text NOT NULL, hash text NOT NULL);
CREATE TABLE attempts (delivery_id text NOT NULL, attempt integer NOT NULL, status integer, latency_ms real, PRIMARY KEY (delivery_id, attempt));`);
  return {
    insertEvent: db.prepare<never, [string, number, string]>(
      "INSERT INTO events VALUES (?, 'beta', 'webhook.received', ?, ?)",
    ),
    insertDelivery: db.prepare<never, [string, string, number]>(
      "INSERT INTO deliveries VALUES (?, ?, 'delivering', 1, ?)",
    ),
    insertAudit: db.prepare<never, [number, string, string]>("INSERT INTO audit (at, entry, hash) VALUES (?, ?, ?)"),
    insertAttempt: db.prepare<never, [string, number, number]>("INSERT INTO attempts VALUES (?, 1, ?, ?)"),
    delivered: db.prepare<never, [number, string]>(
      "UPDATE deliveries SET state = 'delivered', updated_at = ? WHERE id = ?",
    ),
    commit: groupCommit(db),
  };
}

/** The floor on agentowl's schema: the appliance's tables, indexes and row shapes, the same five statements. */
function openSchemaStore(dir: string) {
  const { sqlite: db } = openDatabase(join(dir, "agentowl.db"));
  migrate(db);
  return {
    insertEvent: db.prepare<never, [string, number, string, string, string]>(
      "INSERT INTO events (id, tenant, type, channel, agent, binding, idempotency_key, received_at, envelope, trace, routing) " +
        "VALUES (?, 'beta', 'webhook.received', 'webhook', NULL, 'hooks', NULL, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    ),
    insertDelivery: db.prepare<never, [string, string, number, number, string, string]>(
      "INSERT INTO deliveries (id, event_id, tenant, endpoint, route, state, attempts, last_status, last_error, created_at, " +
        "updated_at, replay_of, requested_by, decision, trace) VALUES (?, ?, 'beta', 'receiver', 'all', 'delivering', 1, NULL, " +
        "NULL, ?, ?, NULL, NULL, ?, ?) ON CONFLICT DO NOTHING",
    ),
    insertAudit: db.prepare<never, [number, string, string, string]>(
      "INSERT INTO audit_log (at, actor, tenant, action, target, decision, details, prev_hash, hash) " +
        "VALUES (?, 'dispatcher', 'beta', 'delivery.attempt', 'beta/endpoints/receiver', NULL, ?, ?, ?)",
    ),
    insertAttempt: db.prepare<never, [string, number, number, number]>(
      "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, error, excerpt) " +
        "VALUES (?, 1, ?, ?, ?, NULL, NULL, 'ok')",
    ),
    // The dispatcher's checkpoint as the appliance runs it: the whole row, the spans appended.
    delivered: db.prepare<
      never,
      [string, string, null, number, number, null, number, number, null, number, string, string]
    >(
      "UPDATE deliveries SET state = ?, decision = ?, approval_id = ?, attempts = ?, last_status = ?, last_error = ?, " +
        "first_attempt_at = ?, attempt_base = ?, requested_by = ?, updated_at = ?, " +
        `trace = ${APPEND("trace", "?11")} WHERE id = ?12 AND state != 'discarded'`,
    ),
    commit: groupCommit(db),
  };
}

/** Null without a DIR: the bare relay stores nothing. */
const store = dir && mode !== "schema" ? openStore(dir) : null;
const schema = dir && mode === "schema" ? openSchemaStore(dir) : null;
let n = 0;
let lastHash = "";
/** The spans of one task in their stored form, as the appliance's are. */
const spans = (at: number, ...named: [string, string?][]) =>
  spansJson(named.map(([name, detail]) => spanOf(name, at, 0.01, "ok", detail)));
const DECISION = JSON.stringify({ effect: "allow", policy: null, rule: null, reason: null });

async function deliver(delivery: string, envelope: string, startedAt: number): Promise<void> {
  const ts = String(Math.floor(Date.now() / 1000));
  const signature = `v1,${createHmac("sha256", KEY).update(`${delivery}.${ts}.${envelope}`).digest("base64")}`;
  const t0 = performance.now();
  const r = await fetch(target, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": delivery,
      "webhook-timestamp": ts,
      "webhook-signature": signature,
    },
    body: envelope,
  });
  await r.arrayBuffer();
  const ms = performance.now() - t0;
  await store?.commit(() => {
    store.insertAttempt.run(delivery, r.status, ms);
    store.delivered.run(Date.now(), delivery);
  });
  await schema?.commit(() => {
    const now = Date.now();
    schema.insertAttempt.run(delivery, startedAt, Math.round(ms), r.status);
    const trace = spans(
      now,
      ["secrets.lease", "vault:beta/receiver"],
      ["delivery", `attempt 1: HTTP ${r.status}`],
      ["state.store", "delivered, attempt 1 recorded"],
    );
    schema.delivered.run("delivered", DECISION, null, 1, r.status, null, startedAt, 0, null, now, trace, delivery);
  });
}

/** The minimal floor's event: an id, the body, nothing else. */
function minimalEvent(body: string, at: number) {
  const id = `evt_${at.toString(36)}${(++n).toString(36).padStart(8, "0")}`;
  const delivery = `dlv_${id.slice(4)}`;
  const envelope = JSON.stringify({
    id,
    type: "webhook.received",
    received_at: new Date(at).toISOString(),
    data: { body, json: JSON.parse(body) },
  });
  return {
    id,
    delivery,
    envelope,
    work: () => {
      store!.insertEvent.run(id, at, envelope);
      store!.insertDelivery.run(delivery, id, at);
      const entry = JSON.stringify({ action: "delivery.attempt", delivery, attempt: 1 });
      lastHash = createHmac("sha256", lastHash).update(entry).digest("hex");
      store!.insertAudit.run(at, entry, lastHash);
    },
  };
}

/** The event on agentowl's schema: its envelope (with the request's headers), spans, routing, decision and chained audit entry. */
function schemaEvent(req: Request, body: string, at: number) {
  const id = newId("evt", at);
  const delivery = newId("dlv", at);
  const headers: Record<string, string> = {};
  req.headers.forEach((v, k) => {
    headers[k] = v;
  });
  const envelope = JSON.stringify({
    id,
    version: 1,
    agent: null,
    received_at: new Date(at).toISOString(),
    trace_id: `T-${id.slice(4)}`,
    type: "webhook.received",
    tenant: "beta",
    channel: "webhook",
    source: { binding: "hooks", remote_ip: "127.0.0.1", scheme: "none", delivery_id: null, headers },
    idempotency_key: null,
    data: { content_type: "application/json", size: body.length, body, json: JSON.parse(body) },
  });
  const routing = JSON.stringify({
    matched: ["all"],
    used_default: true,
    unrouted: false,
    at: new Date(at).toISOString(),
  });
  return {
    id,
    delivery,
    envelope,
    work: () => {
      schema!.insertEvent.run(
        id,
        at,
        envelope,
        spans(at, ["ingress.verify"], ["route", "receiver"], ["ingress.commit"]),
        routing,
      );
      schema!.insertDelivery.run(
        delivery,
        id,
        at,
        at,
        DECISION,
        spans(
          at,
          ["policy.eval", "allow (no policy matched)"],
          ["audit.log", "delivery.attempt 1, with the checkpoint delivering (in the routing commit)"],
        ),
      );
      const details = JSON.stringify({ attempt: 1, delivery, event: id, url: target });
      const prev = lastHash;
      lastHash = createHmac("sha256", prev).update(details).digest("hex");
      schema!.insertAudit.run(at, details, prev, lastHash);
    },
  };
}

Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(req) {
    if (req.method !== "POST") return new Response(null, { status: 405 });
    const body = await req.text();
    const at = Date.now();
    const event = schema ? schemaEvent(req, body, at) : minimalEvent(body, at);
    if (store || schema) await (store ?? schema)!.commit(event.work);
    queueMicrotask(() => void deliver(event.delivery, event.envelope, at).catch(() => {}));
    return Response.json({ id: event.id }, { status: 202 });
  },
});
