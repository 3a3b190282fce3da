/**
 * `npm run bench -- console`: the console's events page with 100,000 stored events, and its live
 * updates (docs/console.md), each beside a reference measured in the same run:
 *
 * - the events page's first page, server time (the app's own handler, no socket) p50/p99 over 200
 *   loads, beside the same query through `GET /v1/events?limit=50` (the same storage read, JSON
 *   instead of HTML); and the page with a search and with a state filter, which examine their
 *   bounded window of events (src/console/events-list.ts EVENTS_SCAN);
 * - the delay from an event's commit (its unit of work resolved) to the `events` message at a
 *   connected SSE client over loopback HTTP, p50/p99 over 200 events (BENCH_CONSOLE_LIVE) spaced
 *   past the stream's gap, beside one loopback HTTP round trip (`/healthz`) in the same process.
 *   Each event waits out the gap (200 ms), so these events are most of the section's time.
 *
 * The appliance runs in this process (startApp), so the events are stored straight through the
 * storage in units of 1,000.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../src/app/app.ts";
import { LIVE_DEFAULTS } from "../src/console/index.ts";
import { loadConfig } from "../src/config/index.ts";
import { newId } from "../src/core/ids.ts";
import { createLogger, Redactor } from "../src/core/log.ts";
import { ENVELOPE_VERSION, type Envelope } from "../src/events/envelope.ts";
import { SseClient } from "../test/helpers/sse.ts";
import { quantile } from "./common.ts";
import { figure, type SectionResult } from "./report.ts";

const EVENTS = Number(process.env.BENCH_CONSOLE_EVENTS ?? 100_000);
const LOADS = Number(process.env.BENCH_CONSOLE_LOADS ?? 200);
const LIVE = Number(process.env.BENCH_CONSOLE_LIVE ?? 200);
const TOKEN = "bench-console-bootstrap-token-000000000";
const PASSWORD = "bench-console-password";
const TENANTS = ["alpha", "beta"];

function mail(i: number, at: number): Envelope {
  const id = newId("evt", at);
  const tenant = TENANTS[i % TENANTS.length]!;
  return {
    id,
    version: ENVELOPE_VERSION,
    type: "email.received",
    tenant,
    agent: "support",
    channel: "email",
    source: { binding: "mail", remote_ip: "192.0.2.7", mail_from: `sender${i % 997}@example.test` },
    received_at: new Date(at).toISOString(),
    trace_id: `T-${id.slice(4)}`,
    idempotency_key: null,
    data: {
      from: { name: `Sender ${i % 997}`, address: `sender${i % 997}@example.test` },
      to: [{ name: null, address: `support@${tenant}.agentowl.lan` }],
      subject: `Order ${i}: question about delivery ${i % 31}`,
      text: `Hello,\n\nwhere is my order ${i}? ${"Some more words of a short mail body. ".repeat(12)}\n\nThanks`,
      auth: { spf: "pass", dkim: "pass", dmarc: "pass", arc: "none" },
    },
  };
}

const stats = (ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
};
const f = (ms: number) => `${ms.toFixed(2)} ms`;

/** Server time of `path`: the app's handler answering and its body read whole, LOADS times after 10 warm-ups. */
async function serverTime(app: App, path: string, headers: Record<string, string>): Promise<number[]> {
  const once = async () => {
    const t0 = performance.now();
    const r = await app.http.handle(new Request(`http://127.0.0.1${path}`, { headers }));
    const body = await r.text();
    const ms = performance.now() - t0;
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${body.slice(0, 200)}`);
    return ms;
  };
  for (let i = 0; i < 10; i++) await once();
  const out: number[] = [];
  for (let i = 0; i < LOADS; i++) out.push(await once());
  return out;
}

async function signIn(base: string): Promise<string> {
  const form = await fetch(`${base}/console/sign-in`);
  const pre = form.headers
    .getSetCookie()
    .map((c) => c.split(";")[0]!)
    .find((c) => c.startsWith("agentowl_presession="))!;
  const csrf = /name="_csrf" value="([^"]*)"/.exec(await form.text())![1]!;
  const r = await fetch(`${base}/console/sign-in`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: pre },
    body: new URLSearchParams({ _csrf: csrf, username: "admin", password: PASSWORD, next: "/console" }).toString(),
  });
  return r.headers
    .getSetCookie()
    .map((c) => c.split(";")[0]!)
    .find((c) => c.startsWith("agentowl_session="))!;
}

export async function benchConsole(): Promise<SectionResult> {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-bench-console-"));
  const config = loadConfig({
    env: {
      AGENTOWL_DATA_DIR: join(dir, "data"),
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_BOOTSTRAP_TOKEN: TOKEN,
    },
    cwd: dir,
  });
  const app = await startApp({
    config,
    log: createLogger({ level: "warn", redactor: new Redactor(), sink: () => {} }),
  });
  try {
    const base = app.url;
    for (const name of TENANTS) {
      const r = await fetch(`${base}/v1/tenants`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name }),
      });
      if (r.status !== 201) throw new Error(`tenant ${name}: ${r.status}`);
    }
    await app.users.create({ username: "admin", password: PASSWORD, role: "admin" }, "bench");
    const cookie = await signIn(base);

    // ---- 100,000 events, straight through the storage ----
    const t0 = performance.now();
    const start = Date.now() - EVENTS * 10;
    const { storage } = app;
    for (let i = 0; i < EVENTS; i += 1000) {
      await storage.committer.run((tx) => {
        for (let j = i; j < Math.min(EVENTS, i + 1000); j++) storage.events.insertTx(tx, mail(j, start + j * 10));
      });
    }
    // Deliveries for a few (dead every 500th, delivered the rest of every 10th): the state filter has rows to find.
    const sample = await storage.events.list({ limit: 5000 });
    await storage.committer.run((tx) => {
      sample.forEach((e, k) => {
        if (k % 10) return;
        storage.events.insertDeliveryTx(tx, {
          id: newId("dlv", tx.now),
          eventId: e.envelope.id,
          tenant: e.envelope.tenant,
          endpoint: "crm",
          state: k % 500 === 0 ? "dead" : "delivered",
          createdAt: tx.now,
          updatedAt: tx.now,
        });
      });
    });
    console.log(`stored ${EVENTS.toLocaleString("en")} events in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // ---- the events page's first page beside /v1/events ----
    const page = stats(await serverTime(app, "/console/events", { cookie }));
    const api = stats(await serverTime(app, "/v1/events?limit=50", { authorization: `Bearer ${TOKEN}` }));
    const fragment = stats(await serverTime(app, "/console/events", { cookie, "hx-request": "true" }));
    const search = stats(await serverTime(app, "/console/events?q=delivery%2017", { cookie }));
    const rare = stats(await serverTime(app, "/console/events?q=nothing-matches-this", { cookie }));
    const dead = stats(await serverTime(app, "/console/events?state=dead", { cookie }));
    console.log(`events page, first page (server time, ${LOADS} loads; target p99 < 50 ms):`);
    console.log(`  /console/events        p50 ${f(page.p50)}  p99 ${f(page.p99)}`);
    console.log(`  /v1/events?limit=50    p50 ${f(api.p50)}  p99 ${f(api.p99)}   (reference)`);
    console.log(
      `  page / API             p50 ${(page.p50 / api.p50).toFixed(2)}x  p99 ${(page.p99 / api.p99).toFixed(2)}x`,
    );
    console.log(`  htmx fragment          p50 ${f(fragment.p50)}  p99 ${f(fragment.p99)}`);
    console.log(`  search, matches often  p50 ${f(search.p50)}  p99 ${f(search.p99)}`);
    console.log(`  search, no match (the whole window) p50 ${f(rare.p50)}  p99 ${f(rare.p99)}`);
    console.log(`  state=dead (sparse)    p50 ${f(dead.p50)}  p99 ${f(dead.p99)}`);

    // ---- SSE: commit → `events` message at a connected client ----
    const r = await fetch(`${base}/console/live`, { headers: { cookie } });
    if (r.status !== 200) throw new Error(`/console/live: ${r.status}`);
    const sse = new SseClient(r);
    await sse.until("connected", () => sse.comments.includes("connected"));
    const delays: number[] = [];
    for (let i = 0; i < LIVE; i++) {
      const from = sse.messages.length;
      await storage.committer.run((tx) => storage.events.insertTx(tx, mail(EVENTS + i, Date.now())));
      const committed = performance.now();
      await sse.until("the events message", () => sse.messages.slice(from).some((m) => m.event === "events"));
      delays.push(sse.messages.slice(from).find((m) => m.event === "events")!.at - committed);
      // Past the stream's gap, so each event is measured alone (a burst shares one message per gap).
      await Bun.sleep(LIVE_DEFAULTS.gapMs + 5);
    }
    await sse.close();
    const rtt: number[] = [];
    for (let i = 0; i < LOADS; i++) {
      const t = performance.now();
      await (await fetch(`${base}/healthz`)).text();
      rtt.push(performance.now() - t);
    }
    const d = stats(delays);
    const h = stats(rtt);
    console.log(`live stream, commit → events message (${LIVE} events; target p99 < 250 ms):`);
    console.log(`  SSE delay              p50 ${f(d.p50)}  p99 ${f(d.p99)}`);
    console.log(`  /healthz round trip    p50 ${f(h.p50)}  p99 ${f(h.p99)}   (reference)`);
    console.log(`  delay / round trip     p50 ${(d.p50 / h.p50).toFixed(2)}x  p99 ${(d.p99 / h.p99).toFixed(2)}x`);
    const lat = (name: string, x: { p50: number; p99: number }, ref?: { name: string; p99: number }) =>
      figure(name, x.p99, "ms p99", {
        p50: x.p50,
        p99: x.p99,
        vs: ref ? [{ role: "reference", name: `${ref.name} p99`, value: ref.p99 }] : [],
      });
    return {
      section: "console",
      figures: [
        lat("/v1/events?limit=50, server time (reference)", api),
        lat(`/console/events, first page of ${EVENTS.toLocaleString("en")} events`, page, {
          name: "/v1/events",
          p99: api.p99,
        }),
        lat("the same as an htmx fragment", fragment),
        lat("search, matches often", search),
        lat("search, no match (the whole window)", rare),
        lat("state=dead (sparse)", dead),
        lat("/healthz round trip (reference)", h),
        lat("SSE: commit → events message", d, { name: "a /healthz round trip", p99: h.p99 }),
      ],
      targets: [
        { name: "events page p99", measured: page.p99, op: "<", bound: 50, unit: " ms" },
        { name: "live update p99", measured: d.p99, op: "<", bound: 250, unit: " ms" },
      ],
      notes: [],
    };
  } finally {
    await app.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
