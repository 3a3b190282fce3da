/**
 * The console's live updates and the events list's filters over real HTTP against a real
 * appliance (docs/console.md#live-updates, #events): the SSE stream says what changed, only in the
 * tenants the user sees, pings, ends with the session and is limited; the live parts answer an
 * htmx request with themselves alone; every filter narrows the list and the cursor still pages.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App } from "../../src/app/app.ts";
import { CSP } from "../../src/console/index.ts";
import { newId } from "../../src/core/ids.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import type { DeliveryState } from "../../src/store/index.ts";
import { consoleApp, signIn as signInAs, TWO_TENANTS } from "../helpers/console.ts";
import { testEnvelope } from "../helpers/events.ts";
import { SseClient } from "../helpers/sse.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-console-live-5e2a9c1d7b3f4a6e";
const PING_MS = 150;
const root = mkdtempSync(join(tmpdir(), "agentowl-console-live-"));
let app: App;
let base: string;
const open: SseClient[] = [];

const get = (path: string, cookie: string, headers: Record<string, string> = {}) =>
  fetch(base + path, { redirect: "manual", headers: { cookie, ...headers } });

/** Signed in as `username`, with the id the appliance keeps the session under (the token's SHA-256). */
async function signIn(username: string): Promise<{ cookie: string; csrf: string; sessionId: string }> {
  const session = await signInAs(base, username);
  const token = session.cookie.slice(session.cookie.indexOf("=") + 1);
  return { ...session, sessionId: createHash("sha256").update(token).digest("hex") };
}

async function stream(cookie: string): Promise<SseClient> {
  const r = await get("/console/live", cookie, { accept: "text/event-stream" });
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
  expect(r.headers.get("content-security-policy")).toBe(CSP);
  const client = new SseClient(r);
  open.push(client);
  await client.until("the stream's first comment", () => client.comments.includes("connected"));
  return client;
}

/** Close streams and wait until the appliance has let them go (it admits a new one). */
async function closeAll(): Promise<void> {
  await Promise.all(open.splice(0).map((c) => c.close()));
}

let second = 0;
function mail(tenant: string, over: { subject?: string; from?: string; at?: number } = {}): Envelope {
  second++;
  const at = over.at ?? Date.now();
  return testEnvelope(tenant, second, {
    id: newId("evt", at),
    received_at: new Date(at).toISOString(),
    type: "email.received",
    channel: "email",
    source: { binding: "mail" },
    idempotency_key: null,
    data: { subject: over.subject ?? `hello ${second}`, from: { name: null, address: over.from ?? "x@example.test" } },
  });
}

/** Commit events (and their deliveries in `states`) through the storage, as an ingress does. */
function commit(events: readonly Envelope[], states: readonly (DeliveryState | null)[] = []): Promise<void> {
  const { storage } = app;
  return storage.committer.run((tx) => {
    events.forEach((e, i) => {
      storage.events.insertTx(tx, e);
      const state = states[i];
      if (state)
        storage.events.insertDeliveryTx(tx, {
          id: newId("dlv", tx.now),
          eventId: e.id,
          tenant: e.tenant,
          endpoint: "crm",
          state,
          createdAt: tx.now,
          updatedAt: tx.now,
        });
    });
  });
}

const tenantOf = (t: string) => (d: unknown) => (d as { tenant: string }).tenant === t;

beforeAll(async () => {
  app = await consoleApp({
    root,
    bootstrap: BOOTSTRAP,
    ...TWO_TENANTS,
    options: { live: { pingMs: PING_MS, perSession: 2, perAppliance: 3, gapMs: 20, checkMs: 0 } },
  });
  base = app.url;
});

afterAll(async () => {
  await closeAll();
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("the live stream", () => {
  test("a member hears `events` when an event of its tenant commits, and nothing of another tenant's", async () => {
    const mia = await signIn("mia");
    const s = await stream(mia.cookie);
    await commit([mail("beta")]);
    await commit([mail("alpha")]);
    await s.until("alpha's events message", () => !!s.find("events", tenantOf("alpha")));
    await s.until("alpha's dashboard message", () => !!s.find("dashboard", tenantOf("alpha")));
    // beta's commit came first: had it been sent, it would have arrived before alpha's.
    expect(s.messages.filter((m) => tenantOf("beta")(JSON.parse(m.data)))).toEqual([]);
    // A message names what changed and where, never a row.
    for (const m of s.messages) expect(Object.keys(JSON.parse(m.data))).toEqual(["tenant"]);
    await closeAll();
  });

  test("the dispatcher's and approvals' outbox topics become `deliveries` and `approvals`", async () => {
    const admin = await signIn("root");
    const s = await stream(admin.cookie);
    await app.storage.outbox.emit({ topic: "delivery.dead", tenant: "beta", payload: { id: "dlv_x" } });
    await s.until("beta's deliveries message", () => !!s.find("deliveries", tenantOf("beta")));
    await app.storage.outbox.emit({ topic: "approval.decided", tenant: "alpha", payload: { id: "apr_x" } });
    await s.until("alpha's approvals message", () => !!s.find("approvals", tenantOf("alpha")));
    await app.storage.outbox.emit({ topic: "delivery.awaiting_approval", tenant: "beta", payload: { id: "dlv_y" } });
    await s.until("beta's approvals message", () => !!s.find("approvals", tenantOf("beta")));
    expect(s.find("dashboard", tenantOf("beta"))).toBeDefined();
    // Topics of no page (an endpoint's URL changed) say nothing.
    expect(s.messages.some((m) => m.event === "message")).toBe(false);
    await closeAll();
  });

  test("a quiet stream is pinged", async () => {
    const mia = await signIn("mia");
    const s = await stream(mia.cookie);
    await s.until("two pings", () => s.comments.filter((c) => c === "ping").length >= 2);
    expect(s.ended).toBe(false);
    await closeAll();
  });

  test("signing out ends the stream with `ended`; a stream of a session revoked elsewhere ends at its next ping", async () => {
    const mia = await signIn("mia");
    const s = await stream(mia.cookie);
    const r = await fetch(`${base}/console/sign-out`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie: mia.cookie },
      body: new URLSearchParams({ _csrf: mia.csrf }).toString(),
    });
    expect(r.status).toBe(303);
    await s.until("the stream's end", () => s.ended);
    expect(s.messages.at(-1)?.event).toBe("ended");
    expect((await get("/console/live", mia.cookie)).status).toBe(401);

    const again = await signIn("mia");
    const t = await stream(again.cookie);
    await app.storage.committer.run((tx) => app.storage.sessions.revokeTx(tx, again.sessionId));
    await t.until("the revoked session's stream to end", () => t.ended, 10 * PING_MS + 5_000);
    expect(t.messages.at(-1)?.event).toBe("ended");
    await closeAll();
  });

  test("a session has at most N streams and the appliance at most M; beyond, 429", async () => {
    const mia = await signIn("mia");
    const rootUser = await signIn("root");
    await stream(mia.cookie);
    await stream(mia.cookie);
    const third = await get("/console/live", mia.cookie);
    expect(third.status).toBe(429);
    expect(third.headers.get("retry-after")).toBe("30");
    expect(await third.text()).toContain("2 live pages open");
    await stream(rootUser.cookie);
    const fourth = await get("/console/live", rootUser.cookie);
    expect(fourth.status).toBe(429);
    expect(await fourth.text()).toContain("Too many live pages");
    // A closed stream gives its place back.
    await closeAll();
    let reopened: Response | null = null;
    const deadline = performance.now() + 5_000;
    while (performance.now() < deadline) {
      reopened = await get("/console/live", mia.cookie);
      if (reopened.status === 200) break;
      await reopened.body?.cancel();
      await Bun.sleep(20); // the poll between two tries, not a wait for something to happen
    }
    expect(reopened?.status).toBe(200);
    await reopened!.body!.cancel();
  });

  test("without a session the stream is 401, not a redirect", async () => {
    const r = await fetch(`${base}/console/live`, { redirect: "manual" });
    expect(r.status).toBe(401);
    expect(r.headers.get("content-security-policy")).toBe(CSP);
  });
});

describe("live parts of the pages", () => {
  test("pages with live parts open the stream; each part re-fetches its own URL with its filters", async () => {
    const mia = await signIn("mia");
    const events = await (await get("/console/events?channel=email&q=hello", mia.cookie)).text();
    expect(events).toContain('hx-ext="sse" sse-connect="/console/live" sse-close="ended"');
    expect(events).toContain(
      '<div id="events-list" hx-get="/console/events?channel=email&amp;q=hello" hx-trigger="sse:events" hx-swap="outerHTML">',
    );
    const stated = await (await get("/console/events?state=dead", mia.cookie)).text();
    expect(stated).toContain('hx-trigger="sse:events, sse:deliveries"');
    const inbox = await (await get("/t/alpha/inbox", mia.cookie)).text();
    expect(inbox).toContain('<div id="inbox-list" hx-get="/t/alpha/inbox" hx-trigger="sse:events"');
    const dashboard = await (await get("/console", mia.cookie)).text();
    expect(dashboard).toContain('<div id="dashboard-live" hx-get="/console" hx-trigger="sse:dashboard"');
  });

  test("an htmx request (HX-Request: true) gets the live part alone", async () => {
    const mia = await signIn("mia");
    await commit([mail("alpha", { subject: "fragment check" })]);
    const htmx = { "hx-request": "true" };
    for (const [path, id] of [
      ["/console/events?q=fragment", "events-list"],
      ["/t/alpha/inbox", "inbox-list"],
      ["/console", "dashboard-live"],
    ] as const) {
      const r = await get(path, mia.cookie, htmx);
      expect(r.status, path).toBe(200);
      expect(r.headers.get("vary")).toBe("HX-Request");
      expect(r.headers.get("content-security-policy")).toBe(CSP);
      const html = await r.text();
      expect(html.startsWith(`<div id="${id}"`), path).toBe(true);
      expect(html.endsWith("</div>"), path).toBe(true);
      expect(html).not.toContain("<html");
      expect(html).not.toContain("<form");
    }
    expect(await (await get("/console/events?q=fragment", mia.cookie, htmx)).text()).toContain("fragment check");
    // Another tenant's list is a 404 for an htmx request too.
    expect((await get("/t/beta/inbox", mia.cookie, htmx)).status).toBe(404);
  });
});

describe("the events list's filters", () => {
  const ids = (html: string) => [...html.matchAll(/href="\/console\/events\/(evt_[^"]+)"/g)].map((m) => m[1]!);
  const olderOf = (html: string) => /<a href="([^"]+)" rel="next">/.exec(html)?.[1]?.replaceAll("&amp;", "&") ?? null;
  const made = {} as Record<"invoice" | "dead" | "waiting" | "failing" | "none" | "beta" | "webhook", string>;

  beforeAll(async () => {
    const t0 = Date.UTC(2030, 0, 1, 12, 0, 0);
    const rows: [Envelope, DeliveryState | null, string][] = [
      [mail("alpha", { subject: "Quarterly invoice", from: "ann@acme.test", at: t0 }), "delivered", "invoice"],
      [mail("alpha", { subject: "Server down", from: "ops@acme.test", at: t0 + 60_000 }), "dead", "dead"],
      [mail("alpha", { subject: "Please approve", at: t0 + 120_000 }), "awaiting_approval", "waiting"],
      [mail("alpha", { subject: "Retry me", at: t0 + 180_000 }), "retrying", "failing"],
      [mail("alpha", { subject: "Unrouted", at: t0 + 240_000 }), null, "none"],
      [mail("beta", { subject: "Beta invoice", at: t0 + 300_000 }), "delivered", "beta"],
      [
        testEnvelope("alpha", 9_000, {
          id: newId("evt", t0 + 360_000),
          received_at: new Date(t0 + 360_000).toISOString(),
        }),
        "delivered",
        "webhook",
      ],
    ];
    await commit(
      rows.map((r) => r[0]),
      rows.map((r) => r[1]),
    );
    for (const [e, , name] of rows) made[name as keyof typeof made] = e.id;
    // 60 more that a search finds, for the cursor.
    const many = Array.from({ length: 60 }, (_, i) =>
      mail("alpha", { subject: `bulk-${i}`, from: "bulk@list.test", at: t0 + 400_000 + i * 1000 }),
    );
    await commit(many);
  });

  test("tenant, channel, type, state, time and search each narrow the list", async () => {
    const admin = await signIn("root");
    const list = async (query: string) => ids(await (await get(`/console/events?${query}`, admin.cookie)).text());
    const window = "since=2030-01-01T12:00:00&until=2030-01-01T12:06:00";
    expect(await list(window)).toEqual(
      (["webhook", "beta", "none", "failing", "waiting", "dead", "invoice"] as const).map((n) => made[n]),
    );
    expect(await list(`${window}&tenant=beta`)).toEqual([made.beta]);
    expect(await list(`${window}&channel=webhook`)).toEqual([made.webhook]);
    expect(await list(`${window}&type=webhook.received`)).toEqual([made.webhook]);
    expect(await list(`${window}&state=delivered`)).toEqual([made.webhook, made.beta, made.invoice]);
    expect(await list(`${window}&state=dead`)).toEqual([made.dead]);
    expect(await list(`${window}&state=failing`)).toEqual([made.failing]);
    expect(await list(`${window}&state=awaiting_approval`)).toEqual([made.waiting]);
    expect(await list(`${window}&state=none`)).toEqual([made.none]);
    expect(await list("since=2030-01-01T12:01:00&until=2030-01-01T12:02:00Z")).toEqual([made.waiting, made.dead]);
    expect(await list(`${window}&q=INVOICE`)).toEqual([made.beta, made.invoice]);
    expect(await list(`${window}&q=ops%40acme`)).toEqual([made.dead]);
    expect(await list(`${window}&q=invoice&tenant=alpha&state=delivered`)).toEqual([made.invoice]);
    // A member's list holds only its tenants, whatever the filters.
    const mia = await signIn("mia");
    expect(ids(await (await get(`/console/events?${window}&q=invoice`, mia.cookie)).text())).toEqual([made.invoice]);
    expect((await get("/console/events?tenant=beta", mia.cookie)).status).toBe(404);
    // Values it cannot take are a 400 page.
    for (const bad of ["state=lost", "since=yesterday", `q=${"x".repeat(101)}`, "before=nope"])
      expect((await get(`/console/events?${bad}`, admin.cookie)).status, bad).toBe(400);
  });

  test("a filtered list pages with its keyset cursor, its filters kept", async () => {
    const admin = await signIn("root");
    const first = await (await get("/console/events?q=bulk-", admin.cookie)).text();
    const page1 = ids(first);
    expect(page1.length).toBe(50);
    const older = olderOf(first)!;
    expect(older).toContain("q=bulk-");
    expect(older).toContain("before=evt_");
    const second = await (await get(older, admin.cookie)).text();
    const page2 = ids(second);
    expect(page2.length).toBe(10);
    expect(new Set([...page1, ...page2]).size).toBe(60);
    expect(olderOf(second)).toBeNull();
    // An older page is not live: new events do not change it.
    expect(second).toContain('<div id="events-list">');
    // The htmx answer of a filtered list keeps the filter too.
    const part = await (await get("/console/events?q=bulk-&state=none", admin.cookie, { "hx-request": "true" })).text();
    expect(ids(part).length).toBe(50);
    expect(part).toContain('hx-get="/console/events?state=none&amp;q=bulk-"');
  });
});
