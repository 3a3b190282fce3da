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
 */
import { Database } from "bun:sqlite";
import { createHmac } from "node:crypto";
import { join } from "node:path";

const [port, target, dir] = [Number(process.argv[2]), process.argv[3]!, process.argv[4]];
/** The bench's signing secret (bench/dispatch.ts). */
const KEY = Buffer.from(Buffer.from("bench-dispatch-signing-secret-32b").toString("base64"), "base64");

/** The durable floor's tables and statements, and a group commit of synchronous units (one transaction per turn of the event loop). */
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
    commit: (work: () => void) =>
      new Promise<void>((resolve) => {
        pending.push({ work, resolve });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      }),
  };
}

/** Null without a DIR: the bare relay stores nothing. */
const store = dir ? openStore(dir) : null;
let n = 0;
let lastHash = "";
async function deliver(delivery: string, envelope: string): Promise<void> {
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
}

Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(req) {
    if (req.method !== "POST") return new Response(null, { status: 405 });
    const body = await req.text();
    const at = Date.now();
    const id = `evt_${at.toString(36)}${(++n).toString(36).padStart(8, "0")}`;
    const delivery = `dlv_${id.slice(4)}`;
    const envelope = JSON.stringify({
      id,
      type: "webhook.received",
      received_at: new Date(at).toISOString(),
      data: { body, json: JSON.parse(body) },
    });
    await store?.commit(() => {
      store.insertEvent.run(id, at, envelope);
      store.insertDelivery.run(delivery, id, at);
      const entry = JSON.stringify({ action: "delivery.attempt", delivery, attempt: 1 });
      lastHash = createHmac("sha256", lastHash).update(entry).digest("hex");
      store.insertAudit.run(at, entry, lastHash);
    });
    queueMicrotask(() => void deliver(delivery, envelope).catch(() => {}));
    return Response.json({ id }, { status: 202 });
  },
});
