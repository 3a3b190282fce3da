/**
 * Dispatch end to end (SPEC §10, §13; issue 8, first part): a webhook comes in, is routed, decided
 * by policy and delivered, signed, to real receivers on 127.0.0.1 that answer 200, 429 with
 * Retry-After, or 500; a require_approval policy parks the delivery until a person approves it.
 * Receivers check signatures as a receiver would, with the standardwebhooks package.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { type App, startApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { SmtpDialogue } from "../helpers/smtp.ts";
import { until } from "../helpers/storage.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-dispatch-4e8a2c6f0b1d3e5f7a9c";
const SECRET = `whsec_${Buffer.from("dispatch-e2e-signing-secret-32by").toString("base64")}`;
const root = mkdtempSync(join(tmpdir(), "agentowl-dispatch-"));
let app: App;
let receiver: ReturnType<typeof Bun.serve>;
const call = apiCaller(() => app.url, BOOTSTRAP);
const received: { path: string; at: number; headers: Record<string, string>; body: string; verified: boolean }[] = [];
let flakyCalls = 0;
let slowNow = 0;
let slowMax = 0;

beforeAll(async () => {
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const body = await req.text();
      const headers = Object.fromEntries(req.headers);
      let verified = false;
      try {
        new Webhook(SECRET).verify(body, headers);
        verified = true;
      } catch {
        // recorded as not verified
      }
      received.push({ path, at: Date.now(), headers, body, verified });
      if (path === "/flaky") return ++flakyCalls === 1 ? new Response("later", { status: 429, headers: { "retry-after": "1" } }) : new Response("ok");
      if (path === "/down") return new Response("broken", { status: 500 });
      if (path === "/busy") return new Response("busy", { status: 429, headers: { "retry-after": "1" } });
      if (path === "/slow") {
        slowMax = Math.max(slowMax, ++slowNow);
        await Bun.sleep(300);
        slowNow--;
      }
      return new Response("ok");
    },
  });
  const url = (p: string) => `http://127.0.0.1:${receiver.port}${p}`;
  const config = loadConfig({
    env: { AGENTOWL_DATA_DIR: join(root, "data"), AGENTOWL_HTTP_LISTEN: "127.0.0.1:0", AGENTOWL_SMTP_LISTEN: "127.0.0.1:0", AGENTOWL_BOOTSTRAP_TOKEN: BOOTSTRAP, AGENTOWL_SMTP_GREETING_DELAY: "0ms", AGENTOWL_DNS_SERVERS: "127.0.0.1:9", AGENTOWL_DNS_TIMEOUT: "100ms" },
    cwd: root,
  });
  app = await startApp({ config, log: silentLogger });
  expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
  expect((await call("PUT", "/v1/tenants/beta/secrets/crm-signing", { body: { value: SECRET } })).status).toBe(201);
  const resources: [string, Record<string, unknown>][] = [
    ["endpoints", { name: "crm", url: url("/ok"), signing_secret: "vault:beta/crm-signing" }],
    ["endpoints", { name: "flaky", url: url("/flaky"), signing_secret: "vault:beta/crm-signing", retry: { max_attempts: 3 } }],
    ["endpoints", { name: "down", url: url("/down"), signing_secret: "vault:beta/crm-signing", retry: { max_attempts: 2 } }],
    ["endpoints", { name: "slow", url: url("/slow"), signing_secret: "vault:beta/crm-signing", max_in_flight: 1 }],
    ["endpoints", { name: "busy", url: url("/busy"), signing_secret: "vault:beta/crm-signing", retry: { max_attempts: 20 } }],
    ["routes", { name: "slow", match: { "json.kind": "slow" }, to: ["slow"] }],
    ["routes", { name: "busy", match: { "json.kind": "busy" }, to: ["busy"] }],
    ["bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } }],
    ["bindings", { name: "mail", type: "email", addresses: ["hello"] }],
    ["routes", { name: "mail", match: { channel: "email", agent: "hello" }, to: ["crm"] }],
    ["routes", { name: "ok", match: { "json.kind": { in: ["ok", "refund", "blocked"] } }, to: ["crm"] }],
    ["routes", { name: "flaky", match: { "json.kind": "flaky" }, to: ["flaky"] }],
    ["routes", { name: "down", match: { "json.kind": "down" }, to: ["down"] }],
    ["policies", { name: "guard", rules: [{ when: { target: "crm", "json.kind": "refund" }, effect: "require_approval", reason: "refunds need a person" }, { when: { "json.kind": "blocked" }, effect: "deny" }] }],
  ];
  for (const [kind, body] of resources) {
    const r = await call("POST", `/v1/tenants/beta/${kind}`, { body });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
});

afterAll(async () => {
  await app?.stop();
  receiver?.stop(true);
  rmSync(root, { recursive: true, force: true });
});

async function send(kind: string): Promise<string> {
  const r = await fetch(`${app.url}/ingress/webhook/beta/hooks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ kind }) });
  expect(r.status).toBe(202);
  return ((await r.json()) as { id: string }).id;
}

async function deliveriesOf(eventId: string, until_: (states: string[]) => boolean) {
  let event: any;
  await until(`deliveries of ${eventId}`, async () => {
    event = (await call("GET", `/v1/events/${eventId}`)).body;
    return event.deliveries.length > 0 && until_(event.deliveries.map((d: { state: string }) => d.state));
  }, 15_000, 50);
  return event.deliveries as Record<string, any>[];
}

describe("dispatch", () => {
  test("a routed webhook reaches its endpoint signed per Standard Webhooks; webhook-id is the delivery id; the attempt is audited", async () => {
    const eventId = await send("ok");
    const [d] = await deliveriesOf(eventId, (s) => s[0] === "delivered");
    expect(d).toMatchObject({ endpoint: "crm", route: "ok", state: "delivered", attempts: 1, last_status: 200, decision: { effect: "allow" } });
    const got = received.find((r) => r.headers["webhook-id"] === d!.id)!;
    expect(got.verified).toBe(true);
    expect(JSON.parse(got.body)).toMatchObject({ id: eventId, type: "webhook.received", data: { json: { kind: "ok" } } });
    const audit = (await call("GET", "/v1/audit?action=delivery.attempt&limit=500")).body.items;
    expect(audit.some((e: { details: { delivery: string } }) => e.details.delivery === d!.id)).toBe(true);
    expect(app.storage.events.attempts(d!.id)).toMatchObject([{ attempt: 1, status: 200, errorClass: null }]);
  });

  test("429 with Retry-After is retried after it, with the same webhook-id, then delivered", async () => {
    const eventId = await send("flaky");
    const [d] = await deliveriesOf(eventId, (s) => s[0] === "delivered");
    expect(d!.attempts).toBe(2);
    const calls = received.filter((r) => r.path === "/flaky");
    expect(calls.map((c) => c.headers["webhook-id"])).toEqual([d!.id, d!.id]);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(950);
    expect(app.storage.events.attempts(d!.id).map((a) => a.status)).toEqual([429, 200]);
  });

  test("an endpoint that keeps failing: every attempt recorded, then dead after max_attempts, and audited", async () => {
    const eventId = await send("down");
    const [d] = await deliveriesOf(eventId, (s) => s[0] === "dead");
    expect(d).toMatchObject({ state: "dead", attempts: 2, last_status: 500 });
    expect(app.storage.events.attempts(d!.id).map((a) => [a.status, a.errorClass, a.excerpt])).toEqual([
      [500, "http", "broken"],
      [500, "http", "broken"],
    ]);
    const dead = (await call("GET", "/v1/audit?action=delivery.dead&limit=500")).body.items;
    expect(dead.some((e: { details: { delivery: string } }) => e.details.delivery === d!.id)).toBe(true);
  });

  test("require_approval parks the delivery; an approval over the API sends it; deny is final", async () => {
    const eventId = await send("refund");
    const [parked] = await deliveriesOf(eventId, (s) => s[0] === "awaiting_approval");
    expect(parked!.decision).toMatchObject({ effect: "require_approval", policy: { name: "guard" }, rule: 0, reason: "refunds need a person" });
    expect(received.some((r) => r.headers["webhook-id"] === parked!.id)).toBe(false);
    const approval = (await call("GET", `/v1/approvals/${parked!.approval_id}`)).body;
    expect(approval).toMatchObject({ state: "pending", tenant: "beta" });
    expect((await call("POST", `/v1/approvals/${parked!.approval_id}/approve`, { body: { reason: "checked the invoice" } })).status).toBe(200);
    const [sent] = await deliveriesOf(eventId, (s) => s[0] === "delivered");
    expect(received.find((r) => r.headers["webhook-id"] === sent!.id)?.verified).toBe(true);

    const blocked = await send("blocked");
    const [denied] = await deliveriesOf(blocked, (s) => s[0] === "denied");
    expect(denied!.decision).toMatchObject({ effect: "deny", rule: 1 });
  });

  test("a mail sent over SMTP arrives, signed, at the receiver as an email.received event", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    const r = await smtp.sendMail("alice@example.com", ["hello@beta.agentowl.lan"], "Subject: hello by mail\r\n\r\nover SMTP\r\n");
    smtp.close();
    const queued = /queued as (msg_\w+)/.exec(r.end!.raw)![1]!;
    await until("mail processed", () => app.storage.mail.get(queued)?.state === "processed", 10_000);
    const eventId = app.storage.mail.get(queued)!.events![0]!;
    const [d] = await deliveriesOf(eventId, (s) => s[0] === "delivered");
    const got = received.find((x) => x.headers["webhook-id"] === d!.id)!;
    expect(got.verified).toBe(true);
    expect(JSON.parse(got.body)).toMatchObject({ id: eventId, type: "email.received", agent: "hello", data: { subject: "hello by mail" } });
  });

  test("max_in_flight: a slow endpoint gets one delivery at a time, and the others do not wait for it", async () => {
    const slow = await Promise.all([send("slow"), send("slow"), send("slow")]);
    await Bun.sleep(50);
    const t0 = Date.now();
    const fast = await send("ok");
    await deliveriesOf(fast, (s) => s[0] === "delivered");
    expect(Date.now() - t0).toBeLessThan(600);
    for (const e of slow) await deliveriesOf(e, (s) => s[0] === "delivered");
    expect(slowMax).toBe(1);
  });

  test("an endpoint that keeps failing opens its circuit breaker, shown on /metrics", async () => {
    const eventId = await send("busy");
    await until("five failed attempts", async () => ((await call("GET", `/v1/events/${eventId}`)).body.deliveries[0]?.attempts ?? 0) >= 5, 30_000, 100);
    const text = await (await fetch(`${app.url}/metrics`)).text();
    expect(text).toMatch(/agentowl_endpoint_circuit_open\{endpoint="beta\/busy"\} (1|0\.5)/);
  }, 45_000);

  test("an event no route matches is recorded as unrouted, with no delivery", async () => {
    const eventId = await send("nothing-matches");
    await until("routing recorded", () => app.storage.events.routing(eventId) !== null, 10_000);
    expect(app.storage.events.routing(eventId)).toMatchObject({ unrouted: true, matched: [] });
    expect((await call("GET", `/v1/events/${eventId}`)).body.deliveries).toEqual([]);
  });
});
