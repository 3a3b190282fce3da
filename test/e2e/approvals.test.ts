import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { APPROVAL_DECIDED, type ParkRequest } from "../../src/store/index.ts";
import { apiCaller } from "../helpers/api.ts";
import { runAgentowl } from "../helpers/process.ts";
import { sqliteOf, until } from "../helpers/storage.ts";
import { storeEvent, testEnvelope } from "../helpers/events.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-approvals-4d2b8f6a1c3e5b7d9f0a";
const root = mkdtempSync(join(tmpdir(), "agentowl-approvals-"));
let app: App;

const call = apiCaller(() => app.url, BOOTSTRAP);
const token = async (scopes: string[]) =>
  (await call("POST", "/v1/tokens", { body: { name: scopes.join(","), scopes } })).body.token as string;
const park = (tenant: string, over: Partial<ParkRequest> = {}) =>
  sqliteOf(app).approvals.park({
    tenant,
    eventId: "evt_01M80MPAZ9E8MRS0YPNR25EEF9",
    action: { kind: "dispatch", target: "crm" },
    policy: { name: "guard", version: 2, rule: 1, reason: "refunds need a human" },
    expiresInMs: 3_600_000,
    onExpiry: "deny",
    ...over,
  });

beforeAll(async () => {
  const config = loopbackConfig(root, BOOTSTRAP);
  app = await startApp({ config, log: silentLogger });
  for (const name of ["alpha", "beta"]) await call("POST", "/v1/tenants", { body: { name } });
});
afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("approvals", () => {
  test("a parked action is listed for its tenant only, with the rule that parked it", async () => {
    const a = await park("alpha");
    await park("beta");
    const alphaRead = await token(["tenant:alpha:read"]);
    const mine = await call("GET", "/v1/approvals", { token: alphaRead });
    expect(mine.body.items.map((x: { tenant: string }) => x.tenant)).toEqual(["alpha"]);
    const one = await call("GET", `/v1/approvals/${a.id}`, { token: alphaRead });
    expect(one.body).toMatchObject({
      id: a.id,
      state: "pending",
      action: { kind: "dispatch", target: "crm" },
      policy: { name: "guard", rule: 1 },
      on_expiry: "deny",
    });
    expect((await call("GET", "/v1/approvals?tenant=beta", { token: alphaRead })).status).toBe(404);
  });

  test("a tenant writer approves; the decision is audited and announced; a second decision is refused", async () => {
    const a = await park("alpha");
    const writer = await token(["tenant:alpha:write"]);
    const r = await call("POST", `/v1/approvals/${a.id}/approve`, {
      token: writer,
      body: { reason: "customer verified" },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ state: "approved", reason: "customer verified" });
    expect(r.body.decided_by).toMatch(/^token:tok_/);
    const audit = await call("GET", `/v1/audit?action=approval.approve`);
    expect(audit.body.items[0]).toMatchObject({
      tenant: "alpha",
      target: a.id,
      decision: "approve",
      actor: r.body.decided_by,
      details: { reason: "customer verified" },
    });
    const announced = (await sqliteOf(app).outbox.read(0, 1000)).filter((e) => e.topic === APPROVAL_DECIDED);
    expect(announced.at(-1)).toMatchObject({
      tenant: "alpha",
      payload: { id: a.id, state: "approved", outcome: "approve" },
    });
    expect(
      (await call("POST", `/v1/approvals/${a.id}/deny`, { token: writer, body: { reason: "changed my mind" } })).status,
    ).toBe(409);
  });

  test("a denial needs a reason; readers and other tenants cannot decide", async () => {
    const a = await park("alpha");
    expect((await call("POST", `/v1/approvals/${a.id}/deny`, { body: {} })).status).toBe(422);
    expect(
      (await call("POST", `/v1/approvals/${a.id}/approve`, { token: await token(["tenant:alpha:read"]) })).status,
    ).toBe(403);
    expect(
      (await call("POST", `/v1/approvals/${a.id}/approve`, { token: await token(["tenant:beta:write"]) })).status,
    ).toBe(404);
    expect((await call("POST", "/v1/approvals/apr_nonsense/approve")).status).toBe(404);
    const d = await call("POST", `/v1/approvals/${a.id}/deny`, { body: { reason: "not a customer" } });
    expect(d.body).toMatchObject({ state: "denied", reason: "not a customer" });
  });

  test("an approval nobody decides in time takes its declared outcome, and a late decision is refused", async () => {
    const late = await park("beta", { expiresInMs: 1, onExpiry: "approve" });
    const swept = await park("beta", { expiresInMs: 1, onExpiry: "deny" });
    await until("expiry", () => Date.now() > swept.expiresAt);
    const r = await call("POST", `/v1/approvals/${late.id}/approve`, { body: {} });
    expect(r.status).toBe(409);
    expect(r.body.detail).toContain("expired");
    expect((await call("GET", `/v1/approvals/${late.id}`)).body).toMatchObject({
      state: "expired",
      decided_by: "system",
    });
    expect(await sqliteOf(app).approvals.expireDue()).toBeGreaterThanOrEqual(1);
    expect((await call("GET", `/v1/approvals/${swept.id}`)).body.state).toBe("expired");
    const outcomes = (await sqliteOf(app).outbox.read(0, 1000))
      .filter((e) => e.topic === APPROVAL_DECIDED)
      .map((e) => e.payload as { id: string; outcome: string });
    expect(outcomes.find((o) => o.id === late.id)?.outcome).toBe("approve");
    expect(outcomes.find((o) => o.id === swept.id)?.outcome).toBe("deny");
    expect((await call("GET", "/v1/audit/verify")).body.ok).toBe(true);
  });

  test("the CLI lists, approves and denies", async () => {
    const a = await park("beta");
    const b = await park("beta");
    const env = { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root };
    const ls = await runAgentowl(["approvals", "ls", "-t", "beta", "--state", "pending"], { cwd: root, env });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toContain(a.id);
    expect(ls.stdout).toContain("dispatch to crm");
    const ok = await runAgentowl(["approvals", "approve", a.id, "--reason", "fine"], { cwd: root, env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`${a.id}: approved`);
    expect((await runAgentowl(["approvals", "deny", b.id], { cwd: root, env })).code).toBe(2);
    expect((await runAgentowl(["approvals", "deny", b.id, "--reason", "no"], { cwd: root, env })).code).toBe(0);
    expect((await runAgentowl(["approvals", "approve", a.id], { cwd: root, env })).code).toBe(4);
  });

  test("approvals show says what is being approved: the action, the event in one line, the rule by name and number, the expiry", async () => {
    const event = testEnvelope("beta", 42, {
      type: "email.received",
      channel: "email",
      agent: "hello",
      data: { from: { name: "Alice", address: "alice@example.com" }, subject: "Refund for invoice 42" },
    });
    const eventId = await storeEvent(sqliteOf(app), event);
    const a = await park("beta", {
      eventId,
      policy: { name: "guard", version: 2, rule: 1, rule_name: "refunds", reason: "refunds need a human" },
    });
    const env = { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root };
    const show = await runAgentowl(["approvals", "show", a.id], { cwd: root, env });
    expect(show.code, show.stderr).toBe(0);
    const lines = show.stdout.split("\n");
    expect(lines[0]).toBe(`approval: ${a.id} (pending; tenant beta)`);
    expect(lines[1]).toBe("action:   dispatch to crm");
    expect(lines[2]).toBe(`event:    ${eventId} mail from alice@example.com: "Refund for invoice 42"`);
    expect(lines[3]).toBe("why:      policy guard v2, rule #2 refunds: refunds need a human");
    expect(lines[4]).toMatch(/^expires:  \S+.*, then denied$/);
    const api = await call("GET", `/v1/approvals/${a.id}`);
    expect(api.body.event).toMatchObject({
      id: eventId,
      type: "email.received",
      summary: 'mail from alice@example.com: "Refund for invoice 42"',
    });
  });
});
