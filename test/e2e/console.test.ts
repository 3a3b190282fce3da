/**
 * The web console over real HTTP against a real appliance (docs/console.md): sign-in and its
 * cookie, CSRF on every POST, the security headers on every page, what a member may see (404
 * elsewhere, as in the API), and markup from outside shown as text, with the appliance's own
 * users (src/users).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { CSP } from "../../src/console/index.ts";
import { newId } from "../../src/core/ids.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import { loopbackConfig } from "../helpers/app.ts";
import { consoleApp, cookieOf, createUsers, csrfField, signIn, signInForm, TWO_TENANTS } from "../helpers/console.ts";
import { testEnvelope } from "../helpers/events.ts";
import { sqliteOf } from "../helpers/storage.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-console-4f1c2b8e9a7d3c6b5a0e";
const SCRIPT = "<script>alert(1)</script>";
const IMG = `"><img src=x onerror=alert(1)>`;
const HOSTILE = `${SCRIPT}${IMG}`;
/** How hono/jsx writes HOSTILE as text. */
const ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;";
const ESCAPED_IMG = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;";

const root = mkdtempSync(join(tmpdir(), "agentowl-console-"));
let app: App;
let base: string;
const ids = { mailAlpha: "", hookAlpha: "", mailBeta: "" };

const get = (path: string, cookie?: string) =>
  fetch(base + path, { redirect: "manual", headers: cookie ? { cookie } : {} });
const post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
  fetch(base + path, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(form).toString(),
  });

function storeEnvelope(e: Envelope, delivery?: { error: string }): Promise<string> {
  const storage = sqliteOf(app);
  return storage.committer.run((tx) => {
    const at = Date.parse(e.received_at);
    const { id } = storage.events.insertTx(tx, e, [
      { name: "smtp.data", start: e.received_at, duration_ms: 40, outcome: "ok" },
      { name: "ingress.commit", start: new Date(at + 40).toISOString(), duration_ms: 10, outcome: "ok" },
    ]);
    if (delivery) {
      const dlv = newId("dlv");
      storage.events.insertDeliveryTx(tx, {
        id: dlv,
        eventId: id,
        tenant: e.tenant,
        endpoint: "crm",
        state: "retrying",
        attempts: 1,
        lastStatus: 500,
        lastError: delivery.error,
        createdAt: tx.now,
        updatedAt: tx.now,
        trace: [{ name: "delivery", start: new Date(at + 50).toISOString(), duration_ms: 50, outcome: "error" }],
      });
      storage.events.insertAttemptTx(tx, {
        deliveryId: dlv,
        attempt: 1,
        startedAt: at + 50,
        latencyMs: 50,
        status: 500,
        error: delivery.error,
      });
    }
    return id;
  });
}

/** A mail and a webhook whose every field from outside carries markup. */
function hostileMail(tenant: string): Envelope {
  const now = Date.now();
  return testEnvelope(tenant, 0, {
    id: newId("evt", now),
    received_at: new Date(now).toISOString(),
    type: "email.received",
    channel: "email",
    agent: `agent${HOSTILE}`,
    source: { binding: "mail", remote_ip: "192.0.2.7", helo: `helo${HOSTILE}`, mail_from: `from${HOSTILE}@x.test` },
    idempotency_key: `mail-${tenant}`,
    data: {
      from: { name: `Sender ${HOSTILE}`, address: `s${HOSTILE}@example.test` },
      to: [{ name: null, address: `hello@${tenant}.agentowl.lan` }],
      subject: `Subject ${HOSTILE}`,
      text: `Body ${HOSTILE}`,
      headers: [
        ["subject", `Subject ${HOSTILE}`],
        [`x-${HOSTILE}`, `value ${HOSTILE}`],
      ],
      attachments: [
        { filename: `invoice${HOSTILE}.pdf`, content_type: "application/pdf", size: 12, sha256: "0".repeat(64) },
      ],
      auth: { spf: "pass", dkim: "fail", dmarc: "none", arc: "none" },
      auth_details: { dkim: { comment: `sig ${HOSTILE}` } },
    },
  });
}

function hostileWebhook(tenant: string): Envelope {
  return testEnvelope(tenant, 5, {
    source: { binding: "github", headers: { "x-custom": `h ${HOSTILE}` } },
    data: { json: { action: `opened ${HOSTILE}`, nested: { title: HOSTILE } }, content_type: "application/json" },
  });
}

beforeAll(async () => {
  app = await consoleApp({
    root,
    bootstrap: BOOTSTRAP,
    tenants: TWO_TENANTS.tenants,
    users: [...TWO_TENANTS.users, { username: "locky", role: "member", tenants: ["alpha"] }],
  });
  base = app.url;
  ids.mailAlpha = await storeEnvelope(hostileMail("alpha"), { error: `refused ${HOSTILE}` });
  ids.hookAlpha = await storeEnvelope(hostileWebhook("alpha"));
  ids.mailBeta = await storeEnvelope(hostileMail("beta"));
  await sqliteOf(app).approvals.park({
    tenant: "alpha",
    action: { kind: "dispatch", target: "crm" },
    policy: { name: "guard", version: 1, rule: 0 },
    expiresInMs: 3600_000,
    onExpiry: "deny",
  });
});

afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

function expectSecurityHeaders(r: Response): void {
  expect(r.headers.get("content-security-policy")).toBe(CSP);
  expect(r.headers.get("x-content-type-options")).toBe("nosniff");
  expect(r.headers.get("referrer-policy")).toBe("no-referrer");
}

/** A whole document: doctype, one html element, a main landmark, no inline script or style. */
function expectPage(html: string): void {
  expect(html.startsWith('<!doctype html><html lang="en">')).toBe(true);
  expect(html.endsWith("</html>")).toBe(true);
  expect(html).toContain('<main id="main"');
  expect(html).toContain('<meta name="htmx-config"');
  expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
  expect(html).not.toMatch(/\sstyle=/);
  expect(html).not.toMatch(/<style/);
}

describe("console pages", () => {
  test("/ redirects to /console", async () => {
    const r = await get("/");
    expect(r.status).toBe(302);
    expect(r.headers.get("location")).toBe("/console");
  });

  test("every page renders 200 with the security headers, no-store and a whole document", async () => {
    const admin = await signIn(base, "root");
    const pages = [
      "/console",
      "/console/events",
      "/console/events?tenant=alpha&channel=email&type=email.received",
      `/console/events/${ids.mailAlpha}`,
      `/console/events/${ids.hookAlpha}`,
      "/t/alpha/inbox",
    ];
    for (const path of pages) {
      const r = await get(path, admin.cookie);
      expect(r.status, path).toBe(200);
      expectSecurityHeaders(r);
      expect(r.headers.get("cache-control")).toBe("no-store");
      expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
      const html = await r.text();
      expectPage(html);
      expect(html).toContain("Signed in as <strong>root</strong>");
    }
    const signInPage = await get("/console/sign-in");
    expect(signInPage.status).toBe(200);
    expectSecurityHeaders(signInPage);
    expectPage(await signInPage.text());
  });

  test("the layout links the embedded assets, served with their type and cached for a year", async () => {
    const html = await (await get("/console/sign-in")).text();
    const links = [...html.matchAll(/(?:href|src)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(links).toHaveLength(3);
    const types: Record<string, string> = { js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8" };
    for (const link of links) {
      expect(link).toMatch(/^\/console\/assets\/(htmx|htmx-sse|console)-[0-9a-f]{12}\.(js|css)$/);
      const r = await get(link);
      expect(r.status, link).toBe(200);
      expectSecurityHeaders(r);
      expect(r.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(r.headers.get("content-type")).toBe(types[link.split(".").at(-1)!]!);
      expect((await r.text()).length).toBeGreaterThan(1000);
    }
    const missing = await get("/console/assets/htmx-000000000000.js");
    expect(missing.status).toBe(404);
    expectSecurityHeaders(missing);
  });

  test("an unknown console path is the 404 page with the security headers", async () => {
    for (const path of ["/console/nothing-here", "/t/alpha/nothing"]) {
      const r = await get(path);
      expect(r.status, path).toBe(404);
      expectSecurityHeaders(r);
      expectPage(await r.text());
    }
  });

  test("the dashboard shows the queue, dead letters, approvals waiting and open circuits", async () => {
    const html = await (await get("/console", (await signIn(base, "root")).cookie)).text();
    for (const label of ["Queue backlog", "Dead-lettered jobs", "Approvals waiting", "Endpoints with an open circuit"])
      expect(html).toContain(label);
    expect(html).toMatch(/Approvals waiting<\/div><div class="big">1</);
    expect(html).toContain('href="/t/alpha/inbox"');
    // The queue is the whole appliance's: a member does not see it.
    const member = await (await get("/console", (await signIn(base, "mia")).cookie)).text();
    expect(member).not.toContain("Queue backlog");
    expect(member).not.toContain('href="/t/beta/inbox"');
  });

  test("the event page draws the trace as SVG bars whose widths follow the durations", async () => {
    const html = await (await get(`/console/events/${ids.mailAlpha}`, (await signIn(base, "root")).cookie)).text();
    const widths = [...html.matchAll(/<rect class="(?:span|error|skipped)" x="([\d.]+)" y="0" width="([\d.]+)"/g)].map(
      (m) => [Number(m[1]), Number(m[2])],
    );
    // smtp.data 40 ms, ingress.commit 10 ms, the delivery 50 ms: 100 ms from first to last.
    expect(widths).toEqual([
      [0, 400],
      [400, 100],
      [500, 500],
    ]);
    expect(html).toContain("Sender authentication");
    expect(html).toContain('class="verdict-fail">fail');
    expect(html).toContain("Attempts");
  });

  test("the events list pages by keyset: 'Older' continues after the last row shown", async () => {
    const storage = sqliteOf(app);
    for (let i = 0; i < 55; i++) await storeEnvelope(testEnvelope("beta", 100 + i));
    const admin = await signIn(base, "root");
    const first = await (await get("/console/events?tenant=beta", admin.cookie)).text();
    const older = /href="(\/console\/events\?tenant=beta&amp;before=evt_[^"]+)" rel="next"/.exec(first)?.[1];
    expect(older).toBeDefined();
    const second = await (await get(older!.replaceAll("&amp;", "&"), admin.cookie)).text();
    const rows = (s: string) => [...s.matchAll(/href="\/console\/events\/(evt_[^"]+)"/g)].map((m) => m[1]!);
    expect(rows(first)).toHaveLength(50);
    const all = (await storage.events.list({ tenants: ["beta"], limit: 1000 })).map((e) => e.envelope.id);
    expect([...rows(first), ...rows(second)]).toEqual(all);
    expect(second).not.toContain('rel="next"');
  });
});

describe("signing in", () => {
  test("unauthenticated pages answer 303 to the sign-in form with the page as next", async () => {
    for (const path of [
      "/console",
      "/console/events?tenant=alpha",
      `/console/events/${ids.mailAlpha}`,
      "/t/alpha/inbox",
    ]) {
      const r = await get(path);
      expect(r.status, path).toBe(303);
      expectSecurityHeaders(r);
      expect(r.headers.get("location")).toBe(`/console/sign-in?next=${encodeURIComponent(path)}`);
    }
  });

  test("signing in sets an HttpOnly, SameSite=Strict session cookie and goes to next", async () => {
    const form = await signInForm(base);
    expect(form.csrf).toMatch(/^[\w-]{43}$/);
    const r = await post(
      "/console/sign-in",
      { _csrf: form.csrf, username: "root", password: "pw-correct-horse", next: "/console/events?tenant=alpha" },
      { cookie: form.cookie },
    );
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/console/events?tenant=alpha");
    const set = r.headers.getSetCookie().find((c) => c.startsWith("agentowl_session="))!;
    expect(set).toContain("HttpOnly");
    expect(set).toContain("SameSite=Strict");
    expect(set).toContain("Path=/");
    // Plain HTTP on loopback: not Secure (the browser would drop it).
    expect(set).not.toContain("Secure");
  });

  test("next is only ever a path on this origin", async () => {
    for (const next of [
      "//evil.example/x",
      "https://evil.example/",
      "/\\evil.example",
      "javascript:alert(1)",
      "/%0d%0aX",
    ]) {
      const form = await signInForm(base);
      const r = await post(
        "/console/sign-in",
        { _csrf: form.csrf, username: "root", password: "pw-correct-horse", next },
        { cookie: form.cookie },
      );
      expect(r.status, next).toBe(303);
      expect(r.headers.get("location"), next).toBe("/console");
    }
    // Shown in the form as it arrived (escaped), but the form posts the cleaned one.
    const html = await (await get(`/console/sign-in?next=${encodeURIComponent("//evil.example")}`)).text();
    expect(html).toContain('name="next" value="/console"');
  });

  test("wrong credentials show the form again with one message, 401; a locked user 429 with when to retry", async () => {
    const form = await signInForm(base);
    const wrong = await post(
      "/console/sign-in",
      { _csrf: form.csrf, username: "root", password: "nope", next: "/console" },
      { cookie: form.cookie },
    );
    expect(wrong.status).toBe(401);
    expectSecurityHeaders(wrong);
    const html = await wrong.text();
    expect(html.match(/role="alert"/g)).toHaveLength(1);
    expect(html).toContain("Wrong username or password.");
    expect(cookieOf(wrong, "agentowl_session")).toBeUndefined();

    for (let i = 0; i < 5; i++)
      await post("/console/sign-in", { _csrf: form.csrf, username: "locky", password: "x" }, { cookie: form.cookie });
    const locked = await post(
      "/console/sign-in",
      { _csrf: form.csrf, username: "locky", password: "pw-correct-horse" },
      { cookie: form.cookie },
    );
    expect(locked.status).toBe(429);
    expect(locked.headers.get("retry-after")).toBe("60");
    expect(await locked.text()).toMatch(/Try again in 60 seconds \(after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)/);
  });

  test("a POST without the CSRF token, or with a wrong one, is refused with 403", async () => {
    const form = await signInForm(base);
    const creds = { username: "root", password: "pw-correct-horse" };
    expect((await post("/console/sign-in", creds, { cookie: form.cookie })).status).toBe(403);
    expect((await post("/console/sign-in", { ...creds, _csrf: "wrong" }, { cookie: form.cookie })).status).toBe(403);
    // The token without its cookie (another site's form) proves nothing.
    expect((await post("/console/sign-in", { ...creds, _csrf: form.csrf })).status).toBe(403);

    const s = await signIn(base, "root");
    const noToken = await post("/console/sign-out", {}, { cookie: s.cookie });
    expect(noToken.status).toBe(403);
    expectSecurityHeaders(noToken);
    expect((await post("/console/sign-out", { _csrf: "wrong" }, { cookie: s.cookie })).status).toBe(403);
    expect((await post("/console/sign-out", {}, { cookie: s.cookie, "x-csrf-token": "wrong" })).status).toBe(403);
    // A JSON body carries no form field: 403 too.
    const json = await fetch(`${base}/console/sign-out`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie: s.cookie, "content-type": "application/json" },
      body: JSON.stringify({ _csrf: s.csrf }),
    });
    expect(json.status).toBe(403);
    expect((await get("/console", s.cookie)).status).toBe(200);

    const out = await post("/console/sign-out", {}, { cookie: s.cookie, "x-csrf-token": s.csrf });
    expect(out.status).toBe(303);
    expect((await get("/console", s.cookie)).status).toBe(303);
  });

  test("the first admin is created with the bootstrap token, only while there are no users", async () => {
    // A fresh appliance: no user yet.
    const freshRoot = mkdtempSync(join(tmpdir(), "agentowl-console-first-"));
    const log = createLogger({ level: "warn", redactor: new Redactor(), sink: () => {} });
    const fresh = await startApp({ config: loopbackConfig(freshRoot, BOOTSTRAP), log });
    const get = (path: string, cookie?: string) =>
      fetch(fresh.url + path, { redirect: "manual", headers: cookie ? { cookie } : {} });
    const post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(fresh.url + path, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams(form).toString(),
      });
    try {
      const page = await get("/console/first-admin");
      expect(page.status).toBe(200);
      expectSecurityHeaders(page);
      const cookie = cookieOf(page, "agentowl_presession")!;
      const csrf = csrfField(await page.text());
      const form = { _csrf: csrf, username: "boss", password: "pw-long-enough-1", password2: "pw-long-enough-1" };
      expect((await post("/console/first-admin", { ...form, bootstrap_token: BOOTSTRAP })).status).toBe(403);
      expect((await post("/console/first-admin", { ...form, bootstrap_token: "wrong" }, { cookie })).status).toBe(403);
      const differ = await post(
        "/console/first-admin",
        { ...form, password2: "other", bootstrap_token: BOOTSTRAP },
        { cookie },
      );
      expect(differ.status).toBe(422);
      expect(await differ.text()).toContain("The two passwords differ.");
      const ok = await post("/console/first-admin", { ...form, bootstrap_token: BOOTSTRAP }, { cookie });
      expect(ok.status).toBe(303);
      expect(ok.headers.get("location")).toBe("/console");
      expect(cookieOf(ok, "agentowl_session")).toBeDefined();
      expect((await fresh.users.get("boss"))?.role).toBe("admin");
      expect((await get("/console/first-admin")).status).toBe(404);
      expect((await post("/console/first-admin", { ...form, bootstrap_token: BOOTSTRAP }, { cookie })).status).toBe(
        404,
      );
    } finally {
      await fresh.stop();
      rmSync(freshRoot, { recursive: true, force: true });
    }
  });
});

describe("a member sees only their tenants", () => {
  test("another tenant's inbox, event or event list is 404, never 403", async () => {
    const mia = await signIn(base, "mia");
    for (const path of [
      "/t/beta/inbox",
      `/console/events/${ids.mailBeta}`,
      "/console/events?tenant=beta",
      "/t/nonexistent/inbox",
      "/t/UPPER/inbox",
      `/console/events/evt_${"0".repeat(26)}`,
    ]) {
      const r = await get(path, mia.cookie);
      expect(r.status, path).toBe(404);
      expectSecurityHeaders(r);
      const html = await r.text();
      expectPage(html);
      expect(html).not.toContain("beta");
    }
    expect((await get("/t/alpha/inbox", mia.cookie)).status).toBe(200);
    const list = await (await get("/console/events", mia.cookie)).text();
    expect(list).toContain(ids.mailAlpha);
    expect(list).not.toContain(ids.mailBeta);
    expect(list).not.toContain(">beta<");
  });

  test("the inbox lists the tenant's mail of the last 24 hours, newest first, each linking to its message page", async () => {
    const at = (ms: number) => ({ id: newId("evt", ms), received_at: new Date(ms).toISOString() });
    const newer = await storeEnvelope({ ...hostileMail("alpha"), ...at(Date.now() + 1000), idempotency_key: "newer" });
    const stale = await storeEnvelope({
      ...hostileMail("alpha"),
      ...at(Date.now() - 25 * 3600_000),
      idempotency_key: "old",
    });
    const html = await (await get("/t/alpha/inbox", (await signIn(base, "mia")).cookie)).text();
    const listed = [...html.matchAll(/href="\/t\/alpha\/inbox\/(evt_[^"]+)"/g)].map((m) => m[1]);
    // Mail only (not the webhook), this tenant's only, none older than a day.
    expect(listed).toEqual([newer, ids.mailAlpha]);
    expect(html).not.toContain(stale);
  });
});

describe("markup from outside shows as text", () => {
  test("tenant, agent, subject, sender, headers, attachment names, verdict details and webhook JSON", async () => {
    const admin = await signIn(base, "root");
    const pages = [
      `/console/events/${ids.mailAlpha}`,
      `/console/events/${ids.hookAlpha}`,
      "/t/alpha/inbox",
      "/console/events",
    ];
    for (const path of pages) {
      const html = await (await get(path, admin.cookie)).text();
      expect(html, path).not.toContain("<script>alert");
      expect(html, path).not.toContain("<img src=x");
      expect(html, path).not.toMatch(/onerror=alert\(1\)>(?!<)/);
      expect(html, path).toContain(ESCAPED_SCRIPT);
    }
    const mail = await (await get(`/console/events/${ids.mailAlpha}`, admin.cookie)).text();
    for (const shown of [
      `Subject ${ESCAPED_SCRIPT}${ESCAPED_IMG}`,
      `agent${ESCAPED_SCRIPT}`,
      `Sender ${ESCAPED_SCRIPT}`,
      `x-${ESCAPED_SCRIPT}`,
      `value ${ESCAPED_SCRIPT}`,
      `invoice${ESCAPED_SCRIPT}`,
      `sig ${ESCAPED_SCRIPT}`,
      `refused ${ESCAPED_SCRIPT}`,
      `helo${ESCAPED_SCRIPT}`,
    ])
      expect(mail).toContain(shown);
    // In the <title> too (the subject names the page).
    expect(mail).toMatch(/<title>Event: Subject &lt;script&gt;/);
    const hook = await (await get(`/console/events/${ids.hookAlpha}`, admin.cookie)).text();
    // The JSON is pretty-printed text: its own escapes (\") stay, the markup is escaped.
    expect(hook).toContain(`opened ${ESCAPED_SCRIPT}\\&quot;&gt;&lt;img src=x onerror=alert(1)&gt;`);
    expect(hook).toContain(`h ${ESCAPED_SCRIPT}`);
  });

  test("a tenant name or filter with markup in the URL is a 404 that does not echo it", async () => {
    const admin = await signIn(base, "root");
    for (const path of [
      `/t/${encodeURIComponent(HOSTILE)}/inbox`,
      `/console/events?tenant=${encodeURIComponent(HOSTILE)}`,
    ]) {
      const r = await get(path, admin.cookie);
      expect(r.status, path).toBe(404);
      const html = await r.text();
      expect(html).not.toContain("<script>alert");
      expect(html).not.toContain("alert(1)");
    }
    const bad = await get(`/console/events?channel=${encodeURIComponent(HOSTILE)}`, admin.cookie);
    expect(bad.status).toBe(400);
    expect(await bad.text()).not.toContain("<script>alert");
  });
});

describe("over HTTPS", () => {
  test("the session and pre-session cookies are Secure", async () => {
    const tlsRoot = mkdtempSync(join(tmpdir(), "agentowl-console-tls-"));
    const log = createLogger({ level: "warn", redactor: new Redactor(), sink: () => {} });
    const tlsApp = await startApp({
      config: loopbackConfig(tlsRoot, BOOTSTRAP, { AGENTOWL_HTTP_TLS: "on" }),
      log,
    });
    await createUsers(tlsApp, ["root"]);
    try {
      expect(tlsApp.url.startsWith("https://")).toBe(true);
      const opts = { redirect: "manual" as const, tls: { rejectUnauthorized: false } };
      const form = await fetch(`${tlsApp.url}/console/sign-in`, opts);
      const pre = form.headers.getSetCookie().find((c) => c.startsWith("agentowl_presession="))!;
      expect(pre).toContain("; Secure");
      const r = await fetch(`${tlsApp.url}/console/sign-in`, {
        ...opts,
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", cookie: pre.split(";")[0]! },
        body: new URLSearchParams({
          _csrf: csrfField(await form.text()),
          username: "root",
          password: "pw-correct-horse",
        }).toString(),
      });
      expect(r.status).toBe(303);
      const set = r.headers.getSetCookie().find((c) => c.startsWith("agentowl_session="))!;
      expect(set).toContain("HttpOnly");
      expect(set).toContain("SameSite=Strict");
      expect(set).toContain("; Secure");
    } finally {
      await tlsApp.stop();
      rmSync(tlsRoot, { recursive: true, force: true });
    }
  });
});
