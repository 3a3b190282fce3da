import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { tempStorages } from "../../test/helpers/storage.ts";
import type { TemplateSpec } from "../control/resources/specs.ts";
import { ManualClock } from "../core/clock.ts";
import { Redactor } from "../core/log.ts";
import type { Span } from "../events/envelope.ts";
import { generateMasterKey, keyringOf } from "../vault/crypto.ts";
import { Vault } from "../vault/vault.ts";
import { MAX_MODEL_RESPONSE_BYTES, ModelProxy } from "./model.ts";

/**
 * A scripted OpenAI-compatible server on 127.0.0.1: deterministic chat completions, with a tool
 * call whenever tools are offered and the last message is the user's; it records what it got.
 */
const seen: { auth: string | null; body: any }[] = [];
let server: ReturnType<typeof Bun.serve>;
let base = "";

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/huge/chat/completions")
        return new Response("x".repeat(MAX_MODEL_RESPONSE_BYTES + 10), {
          headers: { "content-type": "application/json" },
        });
      if (url.pathname === "/broken/chat/completions") return new Response("overloaded", { status: 503 });
      if (url.pathname !== "/v1/chat/completions") return new Response("not found", { status: 404 });
      const body = (await req.json()) as any;
      seen.push({ auth: req.headers.get("authorization"), body });
      const last = body.messages.at(-1);
      const message =
        body.tools?.length && last.role === "user"
          ? {
              role: "assistant",
              content: null,
              tool_calls: [
                { id: "call_1", type: "function", function: { name: "http.crm", arguments: '{"body":{"hi":1}}' } },
              ],
            }
          : { role: "assistant", content: `echo: ${last.content}` };
      return Response.json({
        id: "chatcmpl-1",
        object: "chat.completion",
        created: 1,
        model: body.model,
        choices: [{ index: 0, message, finish_reason: message.tool_calls ? "tool_calls" : "stop" }],
      });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(() => server.stop(true));

const storages = tempStorages();
const KEY = "sk-model-key-0123456789abcdef";

async function setup(model: Partial<TemplateSpec["model"]> = {}) {
  const clock = new ManualClock(Date.now());
  const storage = storages({ clock });
  const vault = new Vault(storage, keyringOf(generateMasterKey()), new Redactor(), clock);
  await vault.set("beta/ollama", KEY, { actor: "test" });
  const template: TemplateSpec = {
    name: "helper",
    instructions: "Be brief.",
    model: { endpoint: `${base}/v1`, default: "llama3.1", api_key: "vault:beta/ollama", ...model },
  };
  const spans: Span[] = [];
  const proxy = new ModelProxy({ vault, clock, timeoutMs: 5_000 });
  const caller = {
    runtimeId: "rt_1",
    tenant: "beta",
    template,
    templateTenant: "beta",
    span: (s: Span) => spans.push(s),
  };
  return { proxy, caller, spans, storage, vault };
}

const tools = [{ type: "function", function: { name: "http.crm", parameters: { type: "object" } } }];

describe("the model proxy", () => {
  test("the key is added from the vault (never from the runtime), the call is not streamed when tools are offered, and the answer's tool_calls come back", async () => {
    const { proxy, caller, spans, storage } = await setup();
    seen.length = 0;
    const answer = await proxy.chat(caller, {
      model: "something-else",
      messages: [{ role: "user", content: "hi" }],
      tools,
      tool_choice: "auto",
      stream: true,
      authorization: "Bearer runtime-made-this-up",
    });
    expect((answer as any).choices[0].message.tool_calls[0].function.name).toBe("http.crm");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.auth).toBe(`Bearer ${KEY}`);
    // The template's default model (no allow_override), never streamed, only the fields the API knows.
    expect(seen[0]!.body).toEqual({
      model: "llama3.1",
      messages: [{ role: "user", content: "hi" }],
      tools,
      tool_choice: "auto",
      stream: false,
    });
    expect(spans.map((s) => [s.name, s.outcome, s.detail])).toEqual([
      ["agent.model", "ok", "model llama3.1, 1 messages, 1 tool calls"],
    ]);
    // The lease is the appliance's, audited.
    const leases = await storage.audit.list({ action: "secret.lease", limit: 10 });
    expect(leases.map((e) => [e.actor, e.target, e.decision])).toEqual([["agent.model:rt_1", "beta/ollama", "allow"]]);
  });

  test("allow_override lets the runtime choose the model", async () => {
    const { proxy, caller } = await setup({ allow_override: true });
    seen.length = 0;
    const answer = await proxy.chat(caller, { model: "qwen2.5", messages: [{ role: "user", content: "hi" }] });
    expect(seen[0]!.body.model).toBe("qwen2.5");
    expect((answer as any).choices[0].message.content).toBe("echo: hi");
  });

  test("a public model server is refused by the egress guard unless the template says allow_public", async () => {
    const { proxy, caller, spans } = await setup({ endpoint: "http://93.184.216.34/v1", api_key: undefined });
    const e = await proxy.chat(caller, { messages: [{ role: "user", content: "hi" }] }).catch((e) => e);
    expect(e.kind).toBe("forbidden");
    expect(e.message).toContain("not reachable from here");
    expect(spans[0]).toMatchObject({ name: "agent.model", outcome: "error" });
    // With allow_public the guard lets it through: what fails then is the network (none here), not the guard.
    const open = await setup({ endpoint: "http://93.184.216.34/v1", api_key: undefined, allow_public: true });
    const fast = new ModelProxy({ vault: open.vault, timeoutMs: 1_000 });
    const passed = await fast.chat(open.caller, { messages: [{ role: "user", content: "hi" }] }).catch((e) => e);
    expect(passed.kind).not.toBe("forbidden");
  });

  test("an answer over 4 MiB, an HTTP error and a malformed request are refused with what went wrong", async () => {
    const { proxy, caller } = await setup();
    const huge = {
      ...caller,
      template: { ...caller.template, model: { ...caller.template.model, endpoint: `${base}/huge` } },
    };
    expect((await proxy.chat(huge, { messages: [{ role: "user", content: "x" }] }).catch((e) => e)).kind).toBe(
      "too_large",
    );
    const broken = {
      ...caller,
      template: { ...caller.template, model: { ...caller.template.model, endpoint: `${base}/broken/` } },
    };
    const e = await proxy.chat(broken, { messages: [{ role: "user", content: "x" }] }).catch((e) => e);
    expect([e.kind, e.message]).toEqual(["unavailable", "the model server answered HTTP 503: overloaded"]);
    expect((await proxy.chat(caller, { messages: "hi" }).catch((e) => e)).kind).toBe("invalid_input");
  });
});
