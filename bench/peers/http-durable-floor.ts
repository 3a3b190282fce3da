/**
 * The HTTP benchmark's second reference, the floor: the least a durable webhook ingress can do
 * per request on this stack. Bun.serve, a Standard Webhooks v1 HMAC check over the raw body, the
 * body decoded and parsed, an envelope of the appliance's shape (headers, body and parsed JSON),
 * and one row in a table with the appliance's `events` columns and indexes, in a group-committed
 * transaction (WAL, synchronous=FULL; one COMMIT per turn of the event loop), answered 202 after
 * the COMMIT. No metrics, spans, routing, rate limits, vault or logging: what it costs beside the
 * bare server is the price of verifying and durably storing, and what the appliance costs beside
 * it is everything else. `bun http-durable-floor.ts PORT DIR`.
 */
import { Database } from "bun:sqlite";
import { createHmac, timingSafeEqual } from "node:crypto";
import { join } from "node:path";

const [port, dir] = [Number(process.argv[2]), process.argv[3]!];
/** The bench's signing secret (bench/http.ts). */
const KEY = Buffer.from(Buffer.from("bench-http-signing-secret-32-byte").toString("base64"), "base64");
const TOLERANCE_S = 300;

const db = new Database(join(dir, "floor.db"), { create: true, strict: true });
db.run("PRAGMA journal_mode = WAL");
db.run("PRAGMA synchronous = FULL");
db.exec(
  "CREATE TABLE events (id text PRIMARY KEY NOT NULL, tenant text NOT NULL, type text NOT NULL, channel text NOT NULL, " +
    "agent text, binding text, idempotency_key text, received_at integer NOT NULL, envelope text NOT NULL, " +
    `trace text NOT NULL, routing text);
CREATE INDEX events_tenant ON events (tenant, id);
CREATE INDEX events_type ON events (type, id);
CREATE UNIQUE INDEX events_idempotency ON events (tenant, binding, idempotency_key) WHERE idempotency_key IS NOT NULL;`,
);
type Row = [string, string, string, string, null, string, string, number, string, string, null];
const insert = db.prepare<{ id: string }, Row>(
  "INSERT INTO events (id, tenant, type, channel, agent, binding, idempotency_key, " +
    "received_at, envelope, trace, routing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON " +
    "CONFLICT DO NOTHING RETURNING id",
);
const begin = db.prepare("BEGIN IMMEDIATE");
const commit = db.prepare("COMMIT");

/** Group commit: every row handed over in one turn of the event loop shares a transaction. */
let pending: { row: Row; resolve: (created: boolean) => void }[] = [];
let scheduled = false;
function flush(): void {
  scheduled = false;
  const batch = pending;
  pending = [];
  begin.run();
  const created = batch.map((p) => insert.get(...p.row) !== null);
  commit.run();
  batch.forEach((p, i) => p.resolve(created[i]!));
}
const store = (row: Row) =>
  new Promise<boolean>((resolve) => {
    pending.push({ row, resolve });
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });

const decoder = new TextDecoder();
let n = 0;
Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(req) {
    if (req.method !== "POST") return new Response(null, { status: 405 });
    const body = new Uint8Array(await req.arrayBuffer());
    const id = req.headers.get("webhook-id");
    const ts = req.headers.get("webhook-timestamp");
    const signatures = req.headers.get("webhook-signature");
    if (!id || !ts || !signatures || Math.abs(Date.now() / 1000 - Number(ts)) > TOLERANCE_S)
      return new Response(null, { status: 401 });
    const mac = createHmac("sha256", KEY).update(`${id}.${ts}.`).update(body).digest();
    const verified = signatures.split(" ").some((s) => {
      const sig = Buffer.from(s.slice(3), "base64");
      return s.startsWith("v1,") && sig.length === mac.length && timingSafeEqual(sig, mac);
    });
    if (!verified) return new Response(null, { status: 401 });
    const text = decoder.decode(body);
    const at = Date.now();
    const evt = `evt_${at.toString(36)}${(++n).toString(36).padStart(10, "0")}`;
    const envelope = {
      id: evt,
      version: 1,
      agent: null,
      received_at: new Date(at).toISOString(),
      trace_id: `T-${evt.slice(4)}`,
      type: "webhook.received",
      tenant: "beta",
      channel: "webhook",
      source: { binding: "hooks", delivery_id: id, headers: Object.fromEntries(req.headers) },
      idempotency_key: id,
      data: {
        content_type: req.headers.get("content-type"),
        size: body.byteLength,
        body: text,
        json: JSON.parse(text),
      },
    };
    const created = await store([
      evt,
      "beta",
      "webhook.received",
      "webhook",
      null,
      "hooks",
      id,
      at,
      JSON.stringify(envelope),
      "[]",
      null,
    ]);
    return Response.json({ id: evt }, { status: created ? 202 : 200 });
  },
});
