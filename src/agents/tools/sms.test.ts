import { afterAll, beforeAll, expect, test } from "bun:test";
import { tempStorages } from "../../../test/helpers/storage.ts";
import type { TemplateSpec } from "../../control/resources/specs.ts";
import { ManualClock } from "../../core/clock.ts";
import { Redactor } from "../../core/log.ts";
import { PolicyCache } from "../../policy/engine.ts";
import { policiesFor } from "../../policy/load.ts";
import { generateMasterKey, keyringOf } from "../../vault/crypto.ts";
import { Vault } from "../../vault/vault.ts";
import { ToolCalls } from "../calls.ts";
import { builtinTools, provisionTools } from "./index.ts";

/** Telnyx's messages API as it answers, on 127.0.0.1 (the real one is on the internet). */
const sent: { auth: string | null; body: Record<string, unknown> }[] = [];
let telnyx: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  telnyx = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      sent.push({ auth: req.headers.get("authorization"), body: (await req.json()) as Record<string, unknown> });
      return Response.json({ data: { id: "msg-40385f64", record_type: "message" } });
    },
  });
});
afterAll(() => telnyx.stop(true));
const storages = tempStorages();
const NUMBER = "+15551234567";
const KEY = "KEY0190ABCDEF_telnyx_user_key";

async function setup(tools: NonNullable<TemplateSpec["tools"]>) {
  const clock = new ManualClock(Date.now());
  const storage = storages({ clock });
  const vault = new Vault(storage, keyringOf(generateMasterKey()), new Redactor(), clock);
  await storage.resources.transact((tx) =>
    storage.resources.putTx(
      tx,
      { tenant: "beta", kind: "bindings", name: "sms" },
      { name: "sms", type: "telnyx", numbers: [NUMBER], verify: { scheme: "none" } },
      { mode: "upsert", actor: "test" },
    ),
  );
  const registry = builtinTools({
    resources: storage.resources,
    mailDomain: "agentowl.lan",
    smarthost: null,
    endpoint: async () => undefined,
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
  const template: TemplateSpec = {
    name: "t",
    instructions: "-",
    model: { endpoint: "http://127.0.0.1:1", default: "m" },
    tools,
  };
  const runtime = (await storage.agents.transitionRuntime("rt_1", ["starting"], {
    state: "claimed",
    tenant: "beta",
    agent: "hello",
    template: "t",
    templateVersion: 1,
    claimedAt: clock.now(),
  }))!;
  const calls = new ToolCalls({
    storage,
    vault,
    registry,
    clock,
    policies: (tenant) => policiesFor(storage.resources, new PolicyCache(), tenant),
    template: async () => template,
    notify: () => {},
  });
  return { storage, vault, registry, runtime, template, calls };
}

test("an sms tool provisioned by the user: its API key is checked, kept in the vault (never on the row), and each send leases it for that call", async () => {
  const api_base = `http://127.0.0.1:${telnyx.port}/v2`;
  const { storage, vault, registry, runtime, template, calls } = await setup([
    { id: "sms", provisioning: "user", config: { number: NUMBER, allow_public: true, api_base } },
  ]);
  const bad = { ...runtime, userConfig: { sms: { credentials: { api_key: "short" } } } };
  await expect(provisionTools({ storage, vault, registry }, bad, template, "test")).rejects.toMatchObject({
    kind: "invalid_input",
  });
  expect(await storage.agents.listTools("rt_1")).toEqual([]);

  const good = { ...runtime, userConfig: { sms: { credentials: { api_key: KEY } } } };
  const [tool] = await provisionTools({ storage, vault, registry }, good, template, "test");
  expect(tool).toMatchObject({ state: "active", resourceId: NUMBER, secretRef: "vault:beta/agent-rt-1-sms" });
  expect(JSON.stringify(tool!.config)).not.toContain(KEY);

  const answer = await calls.call("rt_1", { tool: "sms", args: { to: "+15557654321", text: "See you at 3." } });
  expect(answer).toMatchObject({ status: "done", result: { id: "msg-40385f64" } });
  expect(sent).toEqual([{ auth: `Bearer ${KEY}`, body: { from: NUMBER, to: "+15557654321", text: "See you at 3." } }]);
  const leases = await storage.audit.list({ limit: 100, action: "secret.lease" });
  expect(leases.map((e) => [e.actor.startsWith("tool.call:tc_"), e.target])).toEqual([[true, "beta/agent-rt-1-sms"]]);
});

test("an sms tool whose template does not allow the egress never reaches Telnyx: the call fails and says why", async () => {
  sent.length = 0;
  const { storage, vault, registry, runtime, template, calls } = await setup([
    { id: "sms", provisioning: "pool", config: { number: NUMBER, api_base: `http://127.0.0.1:${telnyx.port}/v2` } },
  ]);
  await provisionTools({ storage, vault, registry }, runtime, template, "test");
  const answer = await calls.call("rt_1", { tool: "sms", args: { to: "+15557654321", text: "hi" } });
  expect(answer.status).toBe("failed");
  expect(JSON.stringify(answer)).toContain("allow_public");
  expect(sent).toEqual([]);
});
