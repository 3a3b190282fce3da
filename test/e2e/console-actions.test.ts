/**
 * The console's actions over real HTTP against a real appliance (docs/console.md#actions):
 * replay, retry and discard on the event page; approvals; API tokens; the vault; the audit log
 * and its verification; the live log. Each action goes through the service its /v1 route uses,
 * as the signed-in user (the audit log names `user:<name>`), needs the session's CSRF token, and
 * is a 404 in a tenant the user may not see. The dispatcher runs in the app and delivers to a
 * receiver on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App } from "../../src/app/app.ts";
import { sha256Hex } from "../../src/api/auth.ts";
import { createLogger, type Logger, LogTap, REDACTED, Redactor } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { consoleApp, signIn } from "../helpers/console.ts";
import { sqliteOf, until } from "../helpers/storage.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-console-actions-7c2e9a4b1d8f";
const root = mkdtempSync(join(tmpdir(), "agentowl-console-actions-"));
let app: App;
let log: Logger;
let receiver: ReturnType<typeof Bun.serve>;
const received: string[] = [];
const call = apiCaller(() => app.url, BOOTSTRAP);

type Session = { cookie: string; csrf: string };
const sessions = {} as Record<"root" | "ann" | "bob", Session>;

const get = (path: string, s?: Session) =>
  fetch(app.url + path, { redirect: "manual", headers: s ? { cookie: s.cookie } : {} });
/** A form POST as a browser sends it: the session cookie, and `_csrf` unless told otherwise. */
const post = (path: string, s: Session, form: Record<string, string> = {}, csrf: string | null = s.csrf) =>
  fetch(app.url + path, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: s.cookie },
    body: new URLSearchParams(csrf === null ? form : { _csrf: csrf, ...form }).toString(),
  });

async function send(tenant: string, kind: string): Promise<string> {
  const r = await fetch(`${app.url}/ingress/webhook/${tenant}/hooks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ kind }),
  });
  expect(r.status).toBe(202);
  return ((await r.json()) as { id: string }).id;
}

async function deliveriesOf(eventId: string, done: (states: string[]) => boolean) {
  let rows = await sqliteOf(app).events.deliveries({ eventId, limit: 100 });
  await until(
    `deliveries of ${eventId}`,
    async () => {
      rows = await sqliteOf(app).events.deliveries({ eventId, limit: 100 });
      return rows.length > 0 && done(rows.map((d) => d.state));
    },
    15_000,
    50,
  );
  return rows;
}

const auditOf = (action: string, target?: string) =>
  sqliteOf(app)
    .audit.list({ action, limit: 500 })
    .then((rows) => rows.filter((e) => target === undefined || e.target === target));

beforeAll(async () => {
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      received.push(`${path} ${req.headers.get("webhook-id")}`);
      return path === "/down" ? new Response("broken", { status: 500 }) : new Response("ok");
    },
  });
  const url = (p: string) => `http://127.0.0.1:${receiver.port}${p}`;
  const redactor = new Redactor();
  const logTap = new LogTap();
  log = createLogger({ level: "debug", redactor, sink: (line) => logTap.publish(line) });
  app = await consoleApp({
    root,
    bootstrap: BOOTSTRAP,
    tenants: ["alpha", "beta"],
    users: [
      "root",
      { username: "ann", role: "member", tenants: ["alpha"] },
      { username: "bob", role: "member", tenants: ["beta"] },
    ],
    options: { log, redactor, logTap },
  });
  for (const tenant of ["alpha", "beta"]) {
    const resources: [string, Record<string, unknown>][] = [
      ["endpoints", { name: "crm", url: url("/ok") }],
      ["endpoints", { name: "archive", url: url("/archive") }],
      ["endpoints", { name: "down", url: url("/down"), retry: { max_attempts: 1 } }],
      ["bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } }],
      ["routes", { name: "ok", match: { "json.kind": { in: ["ok", "refund"] } }, to: ["crm"] }],
      ["routes", { name: "down", match: { "json.kind": "down" }, to: ["down"] }],
      [
        "policies",
        {
          name: "guard",
          rules: [
            {
              name: "refunds",
              when: { target: "crm", "json.kind": "refund" },
              effect: "require_approval",
              reason: "refunds need a person",
            },
          ],
        },
      ],
    ];
    for (const [kind, body] of resources) {
      const r = await call("POST", `/v1/tenants/${tenant}/${kind}`, { body });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
  }
  for (const name of ["root", "ann", "bob"] as const) sessions[name] = await signIn(app.url, name);
});

afterAll(async () => {
  await app?.stop();
  receiver?.stop(true);
  rmSync(root, { recursive: true, force: true });
});

describe("replay, retry and discard on the event page", () => {
  test("replay to all targets and to one endpoint go through the dispatcher as the user, audited user:<name>", async () => {
    const { ann } = sessions;
    const eventId = await send("alpha", "ok");
    const [first] = await deliveriesOf(eventId, (s) => s[0] === "delivered");
    const page = await (await get(`/console/events/${eventId}`, ann)).text();
    expect(page).toContain("Replay to all targets");
    for (const e of ["crm", "archive", "down"]) expect(page).toContain(`Replay to ${e}`);
    expect(page).toContain(`action="/console/events/${eventId}/replay"`);

    const all = await post(`/console/events/${eventId}/replay`, ann);
    expect(all.status).toBe(303);
    expect(all.headers.get("location")).toBe(`/console/events/${eventId}#deliveries`);
    const rows = await deliveriesOf(eventId, (s) => s.length === 2 && s.every((x) => x === "delivered"));
    const replayed = rows.find((d) => d.id !== first!.id)!;
    expect(replayed).toMatchObject({ endpoint: "crm", replayOf: first!.id, requestedBy: "user:ann" });

    expect((await post(`/console/events/${eventId}/replay`, ann, { endpoint: "archive" })).status).toBe(303);
    const three = await deliveriesOf(eventId, (s) => s.length === 3 && s.every((x) => x === "delivered"));
    expect(three.find((d) => d.endpoint === "archive")).toMatchObject({ requestedBy: "user:ann", route: null });
    expect(received).toContain(`/archive ${three.find((d) => d.endpoint === "archive")!.id}`);

    const audited = await auditOf("event.replay", eventId);
    expect(audited.map((e) => [e.actor, (e.details as { endpoint: string | null }).endpoint])).toEqual([
      ["user:ann", "archive"],
      ["user:ann", null],
    ]);
  });

  test("retry (dead only) and discard (dead or retrying) are buttons per delivery; a refusal shows its one line, 409", async () => {
    const { ann } = sessions;
    const eventId = await send("alpha", "down");
    const [dead] = await deliveriesOf(eventId, (s) => s[0] === "dead");
    const page = await (await get(`/console/events/${eventId}`, ann)).text();
    expect(page).toContain(`action="/console/deliveries/${dead!.id}/retry"`);
    expect(page).toContain(`action="/console/deliveries/${dead!.id}/discard"`);

    expect((await post(`/console/deliveries/${dead!.id}/retry`, ann)).status).toBe(303);
    await deliveriesOf(eventId, (s) => s[0] === "dead" && s.length === 1);
    await until("tried again", async () => (await sqliteOf(app).events.getDelivery(dead!.id))!.attempts === 2);
    const [retry] = await auditOf("delivery.retry");
    expect(retry).toMatchObject({ actor: "user:ann", tenant: "alpha" });

    await until("dead again", async () => (await sqliteOf(app).events.getDelivery(dead!.id))!.state === "dead");
    expect((await post(`/console/deliveries/${dead!.id}/discard`, ann)).status).toBe(303);
    expect((await sqliteOf(app).events.getDelivery(dead!.id))!).toMatchObject({
      state: "discarded",
      requestedBy: "user:ann",
    });
    expect((await auditOf("delivery.discard"))[0]).toMatchObject({ actor: "user:ann", tenant: "alpha" });
    // Discarded: no button any more; a second retry is refused by the dispatcher with its reason.
    const after = await (await get(`/console/events/${eventId}`, ann)).text();
    expect(after).not.toContain(`/console/deliveries/${dead!.id}/retry`);
    const refused = await post(`/console/deliveries/${dead!.id}/retry`, ann);
    expect(refused.status).toBe(409);
    const html = await refused.text();
    expect(html).toContain("only a dead delivery can be retried");
    expect(html).toContain('role="alert"');
  });

  test("without the CSRF token each action is 403; another tenant's event or delivery is 404", async () => {
    const { ann, bob } = sessions;
    const eventId = await send("alpha", "ok");
    const [d] = await deliveriesOf(eventId, (s) => s[0] === "delivered");
    const before = (await auditOf("event.replay")).length;
    for (const path of [
      `/console/events/${eventId}/replay`,
      `/console/deliveries/${d!.id}/retry`,
      `/console/deliveries/${d!.id}/discard`,
    ]) {
      expect((await post(path, ann, {}, null)).status).toBe(403);
      expect((await post(path, ann, {}, "wrong")).status).toBe(403);
      expect((await post(path, bob)).status).toBe(404);
    }
    expect((await post("/console/deliveries/dlv_nonsense/retry", ann)).status).toBe(404);
    expect((await auditOf("event.replay")).length).toBe(before);
    // Bob does not even see the buttons' page.
    expect((await get(`/console/events/${eventId}`, bob)).status).toBe(404);
  });
});

describe("approvals", () => {
  test("a parked delivery is listed with its context; approve sends it; the decision is audited user:<name>", async () => {
    const { ann, bob } = sessions;
    const eventId = await send("alpha", "refund");
    const [parked] = await deliveriesOf(eventId, (s) => s[0] === "awaiting_approval");
    const approval = (await sqliteOf(app).approvals.list({ tenants: ["alpha"], state: "pending", limit: 10 })).find(
      (a) => a.eventId === eventId,
    )!;
    const page = await (await get("/console/approvals", ann)).text();
    expect(page).toContain(`/console/approvals/${approval.id}/approve`);
    expect(page).toContain("dispatch to crm");
    expect(page).toContain("policy guard v1, rule #1 refunds: refunds need a person");
    expect(page).toContain(`href="/console/events/${eventId}"`);
    expect(page).toMatch(/\d+ (min|h \d+ min) left/);
    // Another tenant's member sees nothing of it, and cannot decide it.
    expect(await (await get("/console/approvals", bob)).text()).not.toContain(approval.id);
    expect((await post(`/console/approvals/${approval.id}/approve`, bob)).status).toBe(404);
    expect((await post(`/console/approvals/${approval.id}/approve`, ann, {}, null)).status).toBe(403);

    const r = await post(`/console/approvals/${approval.id}/approve`, ann, { reason: "customer verified" });
    expect(r.status).toBe(303);
    await deliveriesOf(eventId, (s) => s[0] === "delivered");
    expect(received).toContain(`/ok ${parked!.id}`);
    expect(await sqliteOf(app).approvals.get(approval.id)).toMatchObject({
      state: "approved",
      decidedBy: "user:ann",
      reason: "customer verified",
    });
    const [entry] = await auditOf("approval.approve", approval.id);
    expect(entry).toMatchObject({ actor: "user:ann", tenant: "alpha" });
    const decided = await (await get("/console/approvals", ann)).text();
    expect(decided).toContain("customer verified");
    expect(decided).toContain("user:ann");
  });

  test("deny needs a reason (422, still pending); with one it is denied; a second decision shows the refusal", async () => {
    const { ann } = sessions;
    const eventId = await send("alpha", "refund");
    await deliveriesOf(eventId, (s) => s[0] === "awaiting_approval");
    const [approval] = (await sqliteOf(app).approvals.list({ tenants: ["alpha"], state: "pending", limit: 10 })).filter(
      (a) => a.eventId === eventId,
    );
    const page = await (await get("/console/approvals", ann)).text();
    expect(page).toMatch(/name="reason" maxlength="1000" required/);
    const none = await post(`/console/approvals/${approval!.id}/deny`, ann, { reason: "  " });
    expect(none.status).toBe(422);
    expect(await none.text()).toContain("A denial needs a reason");
    expect((await sqliteOf(app).approvals.get(approval!.id))!.state).toBe("pending");
    expect((await post(`/console/approvals/${approval!.id}/deny`, ann, { reason: "not a customer" })).status).toBe(303);
    expect(await sqliteOf(app).approvals.get(approval!.id)).toMatchObject({
      state: "denied",
      decidedBy: "user:ann",
      reason: "not a customer",
    });
    await deliveriesOf(eventId, (s) => s[0] === "denied");
    const again = await post(`/console/approvals/${approval!.id}/approve`, ann);
    expect(again.status).toBe(409);
    expect(await again.text()).toContain('role="alert"');
  });
});

describe("API tokens", () => {
  test("an admin creates a token, shown once; it works on the API; revoking it is audited user:<name>", async () => {
    const { root: admin } = sessions;
    const r = await post("/console/tokens", admin, {
      name: "crm sync",
      scopes: "tenant:alpha:read",
      expires_in: "30d",
    });
    expect(r.status).toBe(201);
    const html = await r.text();
    const value = /value="(aow_[\w-]+)"/.exec(html)![1]!;
    expect(html).toContain("this is the only time it is shown");
    const record = await sqliteOf(app).tokens.findByHash(sha256Hex(value));
    expect(record).toMatchObject({ name: "crm sync", scopes: ["tenant:alpha:read"], createdBy: "user:root" });
    expect((await auditOf("token.create", record!.id))[0]!.actor).toBe("user:root");
    expect((await call("GET", "/v1/events?tenant=alpha", { token: value })).status).toBe(200);
    const list = await (await get("/console/tokens", admin)).text();
    expect(list).toContain(record!.id);
    expect(list).not.toContain(value);

    expect((await post(`/console/tokens/${record!.id}/revoke`, admin, {}, null)).status).toBe(403);
    expect((await post(`/console/tokens/${record!.id}/revoke`, admin)).status).toBe(303);
    expect((await sqliteOf(app).tokens.get(record!.id))!.revokedAt).not.toBeNull();
    expect((await auditOf("token.revoke", record!.id))[0]!.actor).toBe("user:root");
    expect((await call("GET", "/v1/events?tenant=alpha", { token: value })).status).toBe(401);
  });

  test("a bad scope is refused beside the form; without CSRF 403; a member gets the 403 page the API gives", async () => {
    const { root: admin, ann } = sessions;
    const bad = await post("/console/tokens", admin, { name: "x", scopes: "tenant:alpha:own" });
    expect(bad.status).toBe(422);
    expect(await bad.text()).toContain("&#39;tenant:alpha:own&#39; is not a scope");
    expect((await post("/console/tokens", admin, { name: "x", scopes: "admin" }, null)).status).toBe(403);
    const before = (await sqliteOf(app).tokens.list({ limit: 1000 })).length;
    expect((await get("/console/tokens", ann)).status).toBe(403);
    expect((await post("/console/tokens", ann, { name: "x", scopes: "admin" })).status).toBe(403);
    expect((await sqliteOf(app).tokens.list({ limit: 1000 })).length).toBe(before);
    expect(await (await get("/console", ann)).text()).not.toContain('href="/console/tokens"');
  });
});

describe("vault", () => {
  test("set and rotate go through the vault as the user; the value is never in a page afterwards", async () => {
    const { ann, root: admin } = sessions;
    const value = "console-vault-value-d41d8cd98f00b204";
    const rotated = "console-vault-rotated-9e107d9d372bb682";
    const set = await post("/console/vault/set", ann, {
      tenant: "alpha",
      name: "crm-api-key",
      value,
      rotation_period: "90d",
    });
    expect(set.status).toBe(303);
    expect(set.headers.get("location")).toBe("/console/vault?tenant=alpha");
    expect(await app.vault.info("alpha/crm-api-key")).toMatchObject({ version: 1, rotationPeriodMs: 90 * 86_400_000 });
    expect((await auditOf("secret.set", "alpha/crm-api-key"))[0]!.actor).toBe("user:ann");

    const page = await (await get("/console/vault?tenant=alpha", ann)).text();
    expect(page).toContain("vault:alpha/crm-api-key");
    expect(page).toContain("every 90d, due ");
    expect(page).toContain('type="password"');

    expect(
      (await post("/console/vault/rotate", ann, { tenant: "alpha", name: "crm-api-key", value: rotated })).status,
    ).toBe(303);
    expect((await app.vault.info("alpha/crm-api-key"))!.version).toBe(2);
    expect((await auditOf("secret.rotate", "alpha/crm-api-key"))[0]!.actor).toBe("user:ann");
    // A refused set (it exists) shows the form again without the value.
    const again = await post("/console/vault/set", ann, { tenant: "alpha", name: "crm-api-key", value });
    expect(again.status).toBe(409);
    const pages = [
      await again.text(),
      await (await get("/console/vault?tenant=alpha", ann)).text(),
      await (await get("/console/vault?tenant=alpha", admin)).text(),
      await (await get("/console/audit", admin)).text(),
      await (await get("/console/audit?tenant=alpha", ann)).text(),
    ];
    for (const html of pages) {
      expect(html).not.toContain(value);
      expect(html).not.toContain(rotated);
    }
  });

  test("another tenant is 404, a missing CSRF token 403; nothing is set", async () => {
    const { bob, ann } = sessions;
    expect((await get("/console/vault?tenant=alpha", bob)).status).toBe(404);
    const form = { tenant: "alpha", name: "stolen", value: "stolen-value-0123456789abcdef" };
    expect((await post("/console/vault/set", bob, form)).status).toBe(404);
    expect((await post("/console/vault/set", ann, form, null)).status).toBe(403);
    expect(await app.vault.info("alpha/stolen").catch(() => null)).toBeNull();
    expect(await (await get("/console/vault", bob)).text()).not.toContain("alpha");
  });
});

describe("audit", () => {
  test("entries filtered by actor, tenant and event, keyset pages; a member sees its tenants only", async () => {
    const { root: admin, ann } = sessions;
    const byAnn = await (await get("/console/audit?actor=user:ann", admin)).text();
    expect(byAnn).toContain("event.replay");
    expect(byAnn).toContain("approval.approve");
    expect(byAnn).not.toContain("user:root");
    const eventId = (await auditOf("event.replay"))[0]!.target!;
    const forEvent = await (await get(`/console/audit?event=${eventId}`, admin)).text();
    expect(forEvent).toContain("event.replay");
    expect(forEvent).not.toContain("secret.set");
    expect((await get("/console/audit?tenant=beta", ann)).status).toBe(404);
    const annAll = await (await get("/console/audit", ann)).text();
    expect(annAll).not.toContain("<td>beta</td>");
    // Keyset pages: the older link continues before the last entry shown.
    for (let i = 0; i < 60; i++) await sqliteOf(app).audit.append({ actor: "system", action: "test.filler" });
    const first = await (await get("/console/audit", admin)).text();
    const older = /href="(\/console\/audit\?before=\d+)"/.exec(first)![1]!;
    const next = await (await get(older, admin)).text();
    const seqs = (html: string) => [...html.matchAll(/<tr><td>(\d+)<\/td>/g)].map((m) => Number(m[1]));
    expect(Math.max(...seqs(next))).toBeLessThan(Math.min(...seqs(first)));
  });

  test("Verify now (an admin's) runs the chain's verify, records it as user:<name>, and the page shows the result", async () => {
    const { root: admin, ann } = sessions;
    expect(await (await get("/console/audit", ann)).text()).not.toContain("/console/audit/verify");
    expect((await post("/console/audit/verify", ann)).status).toBe(403);
    expect((await post("/console/audit/verify", admin, {}, null)).status).toBe(403);
    expect((await post("/console/audit/verify", admin)).status).toBe(303);
    const [entry] = await auditOf("audit.verify");
    expect(entry).toMatchObject({ actor: "user:root", decision: "intact", details: { ok: true } });
    const page = await (await get("/console/audit", admin)).text();
    expect(page).toContain("by user:root");
    expect(page).toContain("intact");
    expect((await call("GET", "/v1/audit/verify")).body.ok).toBe(true);
  });
});

describe("the live log", () => {
  /** Reads the SSE stream until `done` holds for what arrived, with a deadline. */
  async function readStream(path: string, s: Session, write: () => void, done: (text: string) => boolean) {
    const r = await fetch(app.url + path, { headers: { cookie: s.cookie } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/event-stream");
    const reader = r.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const deadline = Date.now() + 10_000;
    let wrote = false;
    while (!done(text) && Date.now() < deadline) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += decoder.decode(chunk.value);
      if (!wrote && text.includes(": connected")) {
        wrote = true;
        write();
      }
    }
    await reader.cancel();
    return text;
  }

  test("lines arrive as escaped <li> SSE messages, filtered by level and tenant, with secrets redacted", async () => {
    const { root: admin } = sessions;
    const page = await (await get("/console/logs?level=warn&tenant=alpha", admin)).text();
    expect(page).toContain('sse-connect="/console/logs/stream?level=warn&amp;tenant=alpha"');
    expect(page).toContain('sse-swap="line"');
    const secret = "log-secret-value-5f4dcc3b5aa765d61d83";
    await post("/console/vault/set", admin, { tenant: "alpha", name: "log-secret", value: secret });
    const text = await readStream(
      "/console/logs/stream?level=warn&tenant=alpha",
      admin,
      () => {
        log.warn("beta's line", { tenant: "beta" });
        log.info("too low", { tenant: "alpha" });
        log.warn("<b>alpha</b> warned", { tenant: "alpha", key: secret });
      },
      (t) => t.includes("warned"),
    );
    const lines = text.split("\n").filter((l) => l.startsWith("data: "));
    expect(lines).toHaveLength(1);
    expect(text).toContain('event: line\ndata: <li class="level-warn">');
    expect(lines[0]).toContain("&lt;b&gt;alpha&lt;/b&gt; warned");
    expect(lines[0]).toContain(REDACTED);
    expect(text).not.toContain(secret);
  });

  test("a member gets the 403 page for the log and its stream, as for /v1/logs/tail", async () => {
    const { ann } = sessions;
    expect((await get("/console/logs", ann)).status).toBe(403);
    expect((await get("/console/logs/stream", ann)).status).toBe(403);
    expect(await (await get("/console", ann)).text()).not.toContain('href="/console/logs"');
  });
});
