import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { tempStorages, until } from "../../test/helpers/storage.ts";
import type { EndpointSpec, TemplateSpec } from "../control/resources/specs.ts";
import { ManualClock } from "../core/clock.ts";
import { Redactor, silentLogger } from "../core/log.ts";
import { PolicyCache } from "../policy/engine.ts";
import { policiesFor } from "../policy/load.ts";
import { generateMasterKey, keyringOf } from "../vault/crypto.ts";
import { Vault } from "../vault/vault.ts";
import { OutboxRelay } from "../workers/outbox-relay.ts";
import { ToolCalls } from "./calls.ts";
import { builtinTools, provisionTools } from "./tools/index.ts";

/** A local receiver for the http tool's calls: every request, as it arrived. */
const received: { headers: Record<string, string>; body: string }[] = [];
let receiver: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      received.push({ headers: Object.fromEntries(req.headers), body: await req.text() });
      return Response.json({ ok: true, ticket: 42 });
    },
  });
});
afterAll(() => receiver.stop(true));

const storages = tempStorages();
const stops: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
  received.length = 0;
});

const SIGNING = `whsec_${randomBytes(32).toString("base64")}`;

const TEMPLATE: TemplateSpec = {
  name: "helper",
  instructions: "Help.",
  model: { endpoint: "http://127.0.0.1:1/v1", default: "m" },
  tools: [
    { id: "http.crm", provisioning: "pool", config: { endpoint: "crm" } },
    { id: "http.open", provisioning: "pool", config: { endpoint: "open" } },
    { id: "email", provisioning: "pool" },
  ],
};

async function setup() {
  const clock = new ManualClock(Date.now());
  const storage = storages({ clock });
  const vault = new Vault(storage, keyringOf(generateMasterKey()), new Redactor(), clock);
  await vault.set("beta/crm-signing", SIGNING, { actor: "test" });
  const url = `http://127.0.0.1:${receiver.port}/hook`;
  const put = (kind: string, name: string, spec: unknown) =>
    storage.resources.transact((tx) =>
      storage.resources.putTx(tx, { tenant: "beta", kind, name }, spec, { mode: "upsert", actor: "test" }),
    );
  await put("endpoints", "crm", { name: "crm", url, signing_secret: "vault:beta/crm-signing" });
  await put("endpoints", "open", { name: "open", url });
  await put("policies", "tools", {
    name: "tools",
    rules: [
      { when: { tool: "http.crm" }, effect: "require_approval", reason: "a person looks at CRM writes" },
      { when: { tool: "email" }, effect: "deny", reason: "no mail today" },
    ],
  });
  const registry = builtinTools({
    resources: storage.resources,
    mailDomain: "agentowl.lan",
    smarthost: null,
    endpoint: async (tenant, name) =>
      (await storage.resources.get({ tenant, kind: "endpoints", name }))?.spec as EndpointSpec | undefined,
  });
  await storage.agents.insertRuntime({
    id: "rt_1",
    isolation: "process",
    tokenHash: "x",
    dir: "/nonexistent",
    socket: "/nonexistent.sock",
    cold: false,
    createdAt: clock.now(),
  });
  const runtime = (await storage.agents.transitionRuntime("rt_1", ["starting"], {
    state: "claimed",
    tenant: "beta",
    agent: "hello",
    template: "helper",
    templateVersion: 1,
    claimedAt: clock.now(),
  }))!;
  await provisionTools({ storage, vault, registry }, runtime, TEMPLATE, "test");
  const notified: { runtime: string; type: string; body: Record<string, unknown> }[] = [];
  const compiled = new PolicyCache();
  const calls = new ToolCalls({
    storage,
    vault,
    registry,
    clock,
    policies: (tenant) => policiesFor(storage.resources, compiled, tenant),
    template: async () => TEMPLATE,
    notify: (runtime, type, body) => notified.push({ runtime, type, body }),
  });
  const relay = new OutboxRelay(storage.outbox, [calls.approvals], silentLogger, { pollMs: 50 });
  relay.start();
  stops.push(() => relay.stop());
  const audit = async (action?: string) =>
    (await storage.audit.list({ limit: 1000, ...(action ? { action } : {}) })).reverse();
  return { storage, vault, calls, notified, audit, clock };
}

describe("tool calls", () => {
  test("require_approval → parked; approved over the ApprovalStore → performed once, signed, with a one-shot lease made for that call after the decision, audited first, and the runtime notified", async () => {
    const { storage, vault, calls, notified, audit } = await setup();
    const answer = await calls.call("rt_1", { tool: "http.crm", args: { body: { note: "call back" } } });
    expect(answer.status).toBe("awaiting_approval");
    if (answer.status !== "awaiting_approval") throw new Error("unreachable");
    const callId = answer.call_id;
    expect(received).toHaveLength(0);
    expect((await storage.agents.getToolCall(callId))!.state).toBe("awaiting_approval");
    // No lease exists before a person said yes.
    expect((await audit("secret.lease")).filter((e) => e.actor === `tool.call:${callId}`)).toEqual([]);
    const approval = (await storage.approvals.get(answer.approval_id))!;
    expect(approval.action).toEqual({
      kind: "tool.call",
      tool: "http.crm",
      args: { body: { note: "call back" } },
      runtime: "rt_1",
      call: callId,
    });

    await storage.approvals.decide(answer.approval_id, { approve: true, reason: null, actor: "user:ana" });
    await until("the runtime notified", () => notified.length === 1);
    expect(notified[0]).toEqual({
      runtime: "rt_1",
      type: "tool.result",
      body: { call_id: callId, status: "done", result: { status: 200, body: { ok: true, ticket: 42 } } },
    });

    // Arrived once, signed as deliveries are: it verifies with the endpoint's secret; webhook-id is the call's id.
    expect(received).toHaveLength(1);
    const { headers, body } = received[0]!;
    expect(new Webhook(SIGNING).verify(body, headers)).toEqual({ note: "call back" });
    expect(headers["webhook-id"]).toBe(callId);

    const row = (await storage.agents.getToolCall(callId))!;
    expect([row.state, row.approvalId, row.error]).toEqual(["done", answer.approval_id, null]);

    // The story in the audit log, in order: parked, decided, the call (audit-first), then its lease.
    const story = (await audit()).filter(
      (e) =>
        ["approval.request", "approval.approve", "tool.call"].includes(e.action) ||
        (e.action === "secret.lease" && e.actor === `tool.call:${callId}`),
    );
    expect(story.map((e) => e.action)).toEqual(["approval.request", "approval.approve", "tool.call", "secret.lease"]);
    const call = story[2]!;
    expect(call).toMatchObject({
      actor: "runtime:rt_1",
      decision: "allow",
      target: "beta/agents/hello/tools/http.crm",
    });
    expect(call.details).toMatchObject({ call: callId, approval: answer.approval_id, approved_by: "user:ana" });
    // The lease was for exactly this call, and it was redeemed: a second redeem fails.
    const leaseId = (story[3]!.details as { lease: string }).lease;
    expect(() => vault.redeem(leaseId)).toThrow("used already");

    // The decision announced again (at-least-once): the call is not performed a second time.
    await calls.decided(answer.approval_id);
    expect(received).toHaveLength(1);
    expect(notified).toHaveLength(1);
  });

  test("an approval denied: the call is never performed, the runtime is told, the row says denied", async () => {
    const { storage, calls, notified, audit } = await setup();
    const answer = await calls.call("rt_1", { tool: "http.crm", args: { body: {} } });
    if (answer.status !== "awaiting_approval") throw new Error(`unexpected ${answer.status}`);
    await storage.approvals.decide(answer.approval_id, { approve: false, reason: "not now", actor: "user:ana" });
    await until("the runtime notified", () => notified.length === 1);
    expect(notified[0]!.body).toEqual({
      call_id: answer.call_id,
      status: "denied",
      error: "denied by user:ana: not now",
    });
    expect(received).toHaveLength(0);
    expect((await storage.agents.getToolCall(answer.call_id))!.state).toBe("denied");
    expect((await audit("tool.deny")).map((e) => e.details)).toEqual([
      expect.objectContaining({ call: answer.call_id, approval: answer.approval_id }),
    ]);
    expect(await audit("tool.call")).toEqual([]);
  });

  test("a tool not in the template is refused and audited; nothing leaves", async () => {
    const { storage, calls, audit } = await setup();
    const answer = await calls.call("rt_1", { tool: "webhook.ops", args: {} });
    expect(answer).toEqual({ status: "refused", reason: "tool webhook.ops is not in the template helper" });
    const [entry] = await audit("tool.refused");
    expect(entry).toMatchObject({ actor: "runtime:rt_1", tenant: "beta", decision: "deny" });
    expect(entry!.details).toMatchObject({ tool: "webhook.ops", reason: answer.status === "refused" && answer.reason });
    expect((await storage.agents.listToolCalls({ runtimeId: "rt_1", limit: 10 })).map((c) => c.state)).toEqual([
      "refused",
    ]);
    expect(received).toHaveLength(0);
  });

  test("a runtime that is not claimed is refused, and the attempt audited", async () => {
    const { storage, calls, audit } = await setup();
    await storage.agents.transitionRuntime("rt_1", ["claimed"], { state: "stuck" });
    const answer = await calls.call("rt_1", { tool: "http.open", args: { body: {} } });
    expect(answer).toEqual({ status: "refused", reason: "the runtime is not claimed" });
    expect((await audit("tool.refused")).map((e) => e.details)).toEqual([
      expect.objectContaining({ runtime: "rt_1", tool: "http.open" }),
    ]);
    expect(received).toHaveLength(0);
  });

  test("a policy deny: denied with its reason, audited, never performed", async () => {
    const { storage, calls, audit } = await setup();
    const answer = await calls.call("rt_1", { tool: "email", args: { to: "a@b.lan", subject: "s", text: "t" } });
    expect(answer).toMatchObject({ status: "denied", reason: "no mail today" });
    const [entry] = await audit("tool.deny");
    expect(entry).toMatchObject({ decision: "deny", target: "beta/agents/hello/tools/email" });
    expect(entry!.details).toMatchObject({ policy: { name: "tools", version: 1, global: false }, rule: 1 });
    expect((await storage.agents.listToolCalls({ runtimeId: "rt_1", limit: 10 }))[0]!.state).toBe("denied");
  });

  test("allow: the tool.call entry commits before the call leaves, and the answer carries the result", async () => {
    const { storage, calls, audit } = await setup();
    let auditedBefore = false;
    const answer = await (async () => {
      const p = calls.call("rt_1", { tool: "http.open", args: { body: { n: 1 } } });
      await until("the call at the receiver", () => received.length === 1);
      auditedBefore = (await audit("tool.call")).length === 1;
      return p;
    })();
    expect(auditedBefore).toBe(true);
    expect(answer).toMatchObject({ status: "done", result: { status: 200, body: { ok: true, ticket: 42 } } });
    expect(JSON.parse(received[0]!.body)).toEqual({ n: 1 });
    // No signing secret on this endpoint: nothing leased.
    expect(received[0]!.headers["webhook-signature"]).toBeUndefined();
    const [row] = await storage.agents.listToolCalls({ runtimeId: "rt_1", limit: 10 });
    expect([row!.state, row!.decision?.effect]).toEqual(["done", "allow"]);
  });
});
