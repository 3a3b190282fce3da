/**
 * The console's dashboard over real HTTP against a real appliance (docs/console.md#dashboard): the
 * ingest and delivery charts drawn as SVG from the stored events and deliveries, per tenant the
 * user sees; the disk and the audit chain's last verification for admins only; cached counts.
 * The appliance runs on a ManualClock so that every count lands in a known bucket.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App } from "../../src/app/app.ts";
import { CSP, DASHBOARD_CACHE_MS } from "../../src/console/index.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { newId } from "../../src/core/ids.ts";
import type { DeliveryState } from "../../src/store/index.ts";
import { CHART_BOX } from "../../web/components/chart.tsx";
import { consoleApp, signIn, TWO_TENANTS } from "../helpers/console.ts";
import { testEnvelope } from "../helpers/events.ts";
import { sqliteOf } from "../helpers/storage.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-dashboard-8c1d2e3f4a5b6c7d8e9f";
const MIN = 60_000;
/** The appliance's now: 14:30:20 UTC. The hour chart's buckets start at 13:31, the day chart's at 15:00 the day before. */
const NOW = Date.UTC(2026, 10, 21, 14, 30, 20);
const at = (h: number, m: number, s = 0) => Date.UTC(2026, 10, 21, h, m, s);

const root = mkdtempSync(join(tmpdir(), "agentowl-dashboard-"));
const clock = new ManualClock(NOW);
let app: App;
let base: string;
let seq = 0;

const get = (path: string, cookie: string, headers: Record<string, string> = {}) =>
  fetch(base + path, { redirect: "manual", headers: { cookie, ...headers } });

/** `n` events of `tenant` received at `ms`, each with a delivery that reached `state` at `settled` when given. */
function store(tenant: string, ms: number, n: number, settled?: { state: DeliveryState; at: number }): Promise<void> {
  const storage = sqliteOf(app);
  return storage.committer.run((tx) => {
    for (let i = 0; i < n; i++) {
      const e = testEnvelope(tenant, 0, {
        id: newId("evt", ms),
        received_at: new Date(ms).toISOString(),
        idempotency_key: `dash-${seq++}`,
      });
      const { id } = storage.events.insertTx(tx, e);
      if (settled)
        storage.events.insertDeliveryTx(tx, {
          id: newId("dlv", settled.at),
          eventId: id,
          tenant,
          endpoint: "crm",
          state: settled.state,
          createdAt: ms,
          updatedAt: settled.at,
        });
    }
  });
}

interface Bar {
  class: string;
  y: number;
  height: number;
  title: string;
}

/** The bars of one chart of a page, in document order (bucket by bucket, series within). */
function chart(html: string, id: string): { bars: Bar[]; svg: string } {
  const start = html.indexOf(`<figure class="chart" id="${id}">`);
  expect(start).toBeGreaterThanOrEqual(0);
  const svg = html.slice(start, html.indexOf("</figure>", start));
  const bars = [
    ...svg.matchAll(
      /<rect class="bar ([^"]+)" x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)"><title>([^<]*)<\/title><\/rect>/g,
    ),
  ].map((m) => ({ class: m[1]!, y: Number(m[2]), height: Number(m[3]), title: m[4]! }));
  expect(bars.length).toBe((svg.match(/<rect /g) ?? []).length);
  return { bars, svg };
}

const counts = (bars: Bar[], cls: string) =>
  bars.filter((b) => b.class === cls).map((b) => Number(/^(\d+) /.exec(b.title)![1]));

/** Heights proportional to the counts: every bar's height / count is the same. */
function expectProportional(bars: Bar[]): void {
  const nonzero = bars.filter((b) => b.height > 0);
  expect(nonzero.length).toBeGreaterThan(0);
  const per = nonzero[0]!.height / Number(/^(\d+) /.exec(nonzero[0]!.title)![1]);
  for (const b of bars) expect(b.height).toBeCloseTo(Number(/^(\d+) /.exec(b.title)![1]) * per, 1);
  for (const b of bars) expect(b.height).toBeLessThanOrEqual(CHART_BOX.height - CHART_BOX.top - CHART_BOX.bottom);
}

beforeAll(async () => {
  app = await consoleApp({
    root,
    bootstrap: BOOTSTRAP,
    ...TWO_TENANTS,
    options: { clock },
  });
  base = app.url;
  // The last hour: minute 14:25 (bucket 54) and 14:29 (bucket 58); earlier in the day: 12:10.
  await store("alpha", at(14, 25, 10), 3, { state: "delivered", at: at(14, 25, 40) });
  await store("alpha", at(14, 29, 59), 1, { state: "dead", at: at(14, 30, 5) });
  await store("beta", at(14, 25, 0), 5, { state: "delivered", at: at(14, 26, 0) });
  await store("alpha", at(12, 10), 2);
  // Outside both charts: a day and a half ago.
  await store("alpha", NOW - 36 * 3600_000, 4);
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("dashboard charts", () => {
  test("an admin's charts have one bar per bucket, counting every tenant's events and deliveries, heights to scale", async () => {
    const { cookie } = await signIn(base, "root");
    const r = await get("/console", cookie);
    expect(r.status).toBe(200);
    const html = await r.text();

    const eventsHour = chart(html, "chart-events-hour");
    expect(eventsHour.bars).toHaveLength(60);
    const perMinute = counts(eventsHour.bars, "bar-events");
    expect(perMinute[54]).toBe(8);
    expect(perMinute[58]).toBe(1);
    expect(perMinute.reduce((a, b) => a + b, 0)).toBe(9);
    expect(eventsHour.bars[54]!.title).toBe("8 events, 14:25–14:26 UTC");
    expectProportional(eventsHour.bars);
    expect(eventsHour.bars[54]!.height / eventsHour.bars[58]!.height).toBeCloseTo(8, 1);
    expect(eventsHour.svg).toContain(
      '<svg role="img" aria-labelledby="chart-events-hour-title chart-events-hour-desc"',
    );
    expect(eventsHour.svg).toContain("9 events in the last hour, most 8 at 14:25 UTC.");

    const eventsDay = chart(html, "chart-events-day");
    expect(eventsDay.bars).toHaveLength(24);
    const perHour = counts(eventsDay.bars, "bar-events");
    expect(perHour[23]).toBe(9);
    expect(perHour[21]).toBe(2);
    expect(perHour.reduce((a, b) => a + b, 0)).toBe(11);
    expectProportional(eventsDay.bars);

    const deliveriesHour = chart(html, "chart-deliveries-hour");
    expect(deliveriesHour.bars).toHaveLength(120);
    const delivered = counts(deliveriesHour.bars, "bar-delivered");
    const dead = counts(deliveriesHour.bars, "bar-dead");
    expect([delivered[54], delivered[55], dead[59]]).toEqual([3, 5, 1]);
    expect(delivered.reduce((a, b) => a + b, 0) + dead.reduce((a, b) => a + b, 0)).toBe(9);
    expectProportional(deliveriesHour.bars);
    expect(deliveriesHour.svg).toContain("8 delivered and 1 dead in the last hour, most 5 at 14:26 UTC.");

    const deliveriesDay = chart(html, "chart-deliveries-day");
    expect(deliveriesDay.bars).toHaveLength(48);
    expect(counts(deliveriesDay.bars, "bar-delivered")[23]).toBe(8);
    expect(counts(deliveriesDay.bars, "bar-dead")[23]).toBe(1);
  });

  test("a member's charts count only its tenants", async () => {
    const { cookie } = await signIn(base, "mia");
    const html = await (await get("/console", cookie)).text();
    const perMinute = counts(chart(html, "chart-events-hour").bars, "bar-events");
    expect([perMinute[54], perMinute[58]]).toEqual([3, 1]);
    expect(perMinute.reduce((a, b) => a + b, 0)).toBe(4);
    expect(counts(chart(html, "chart-events-day").bars, "bar-events").reduce((a, b) => a + b, 0)).toBe(6);
    const deliveries = chart(html, "chart-deliveries-hour").bars;
    expect(counts(deliveries, "bar-delivered").reduce((a, b) => a + b, 0)).toBe(3);
    expect(counts(deliveries, "bar-dead").reduce((a, b) => a + b, 0)).toBe(1);
    expect(html).toContain("4 events in the last hour, most 3 at 14:25 UTC.");
  });

  test("the live part (an htmx request) carries the charts, and their counts are reused for 10 s", async () => {
    const { cookie } = await signIn(base, "mia");
    const live = () => get("/console", cookie, { "hx-request": "true" }).then((r) => r.text());
    const before = await live();
    expect(before.startsWith('<div id="dashboard-live"')).toBe(true);
    expect(counts(chart(before, "chart-events-hour").bars, "bar-events")[58]).toBe(1);
    await store("alpha", at(14, 29, 30), 2);
    expect(counts(chart(await live(), "chart-events-hour").bars, "bar-events")[58]).toBe(1);
    clock.advance(DASHBOARD_CACHE_MS);
    // 14:30:30 is still in minute 14:30: the same buckets, counted again.
    expect(counts(chart(await live(), "chart-events-hour").bars, "bar-events")[58]).toBe(3);
  });
});

describe("dashboard: disk and audit", () => {
  test("an admin sees the data dir's disk, database and spool sizes and the audit chain's last verification", async () => {
    const { cookie, csrf } = await signIn(base, "root");
    let html = await (await get("/console", cookie)).text();
    expect(html).toContain('id="disk"');
    expect(html).toMatch(/[\d.]+ (bytes|KiB|MiB|GiB|TiB) free/);
    expect(html).toMatch(/Database [\d.]+ (KiB|MiB)/);
    expect(html).toMatch(/spool [\d.]+ (bytes|KiB|MiB)/);
    expect(html).toContain('id="audit-status"');
    expect(html).toContain("Never verified");
    expect(html).toContain('href="/console/audit"');

    const r = await fetch(`${base}/console/audit/verify`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie, "x-csrf-token": csrf, "content-type": "application/x-www-form-urlencoded" },
      body: "",
    });
    expect(r.status).toBe(303);
    const entry = (await sqliteOf(app).audit.list({ action: "audit.verify", limit: 1 }))[0]!;
    html = await (await get("/console", cookie)).text();
    expect(html).toContain("Intact");
    expect(html).toContain(`Verified ${new Date(entry.at).toISOString()} by user:root`);
  });

  test("a member sees neither the disk nor the audit chain's status", async () => {
    const { cookie } = await signIn(base, "mia");
    const html = await (await get("/console", cookie)).text();
    expect(html).not.toContain('id="disk"');
    expect(html).not.toContain('id="audit-status"');
    expect(html).not.toContain("Audit chain");
    expect(html).not.toContain("spool");
  });

  test("the dashboard has the security headers and no inline style or script", async () => {
    for (const user of ["root", "mia"]) {
      const { cookie } = await signIn(base, user);
      for (const headers of [{}, { "hx-request": "true" }] as Record<string, string>[]) {
        const r = await get("/console", cookie, headers);
        expect(r.status).toBe(200);
        expect(r.headers.get("content-security-policy")).toBe(CSP);
        expect(r.headers.get("x-content-type-options")).toBe("nosniff");
        expect(r.headers.get("referrer-policy")).toBe("no-referrer");
        const html = await r.text();
        expect(html).not.toMatch(/\sstyle=/);
        expect(html).not.toMatch(/<style/);
        expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
      }
    }
  });
});
