/**
 * The agents' whole story (docs/agents.md) on a real appliance: a template with an email tool and
 * an http tool, a claimed agent in its sandbox, mail to hello@beta.<domain> that becomes its task,
 * a scripted OpenAI-compatible model on 127.0.0.1 that asks for the http tool, a policy that wants
 * a human for it, the approval over the API, the call made once with a lease for exactly that call
 * and arriving signed at a local receiver, and the event's trace and audit log telling all of it.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { type App, startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { loopbackConfig } from "../helpers/app.ts";
import { SmtpDialogue } from "../helpers/smtp.ts";
import { until } from "../helpers/storage.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-agents-e2e-7c1d9a3f5e2b4c6d8e0f";
const SECRET = `whsec_${Buffer.from("agents-e2e-crm-signing-secret-32").toString("base64")}`;
const MODEL_KEY = "sk-local-model-key-never-in-the-runtime";
const root = mkdtempSync(join(tmpdir(), "agentowl-agents-e2e-"));
let app: App;
const call = apiCaller(() => app.url, BOOTSTRAP);

/** What the model server was asked, and the receiver got. */
const asked: { auth: string | null; body: Record<string, unknown> }[] = [];
const received: { headers: Record<string, string>; body: string }[] = [];

/** A scripted OpenAI-compatible server: first asks for the CRM tool, then answers in words once it saw the tool's result. */
const model = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const body = (await req.json()) as { messages: { role: string; content: string | null }[]; stream?: boolean };
    asked.push({ auth: req.headers.get("authorization"), body });
    const toolResult = body.messages.find((m) => m.role === "tool");
    const message = toolResult
      ? { role: "assistant", content: `Logged the request; the CRM call is ${toolResult.content}.` }
      : {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: "call_1",
              type: "function",
              function: { name: "http_crm", arguments: JSON.stringify({ body: { lead: "Ada", wants: "a demo" } }) },
            },
          ],
        };
    return Response.json({
      id: `chatcmpl-${asked.length}`,
      object: "chat.completion",
      model: "llama3",
      choices: [{ index: 0, message, finish_reason: toolResult ? "stop" : "tool_calls" }],
    });
  },
});

const receiver = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    received.push({ headers: Object.fromEntries(req.headers), body: await req.text() });
    return Response.json({ ok: true });
  },
});

beforeAll(async () => {
  const config = loopbackConfig(root, BOOTSTRAP, {
    AGENTOWL_SMTP_GREETING_DELAY: "0ms",
    AGENTOWL_DNS_SERVERS: "127.0.0.1:9",
    AGENTOWL_DNS_TIMEOUT: "100ms",
    AGENTOWL_AGENTS_MIN_IDLE: "1",
    AGENTOWL_AGENTS_TICK_INTERVAL: "1s",
  });
  app = await startApp({ config, log: silentLogger });
  const ok = async (r: Promise<{ status: number; body: unknown }>) => {
    const res = await r;
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
  };
  await ok(call("POST", "/v1/tenants", { body: { name: "beta" } }));
  await ok(call("PUT", "/v1/tenants/beta/secrets/crm-signing", { body: { value: SECRET } }));
  await ok(call("PUT", "/v1/tenants/beta/secrets/model-key", { body: { value: MODEL_KEY } }));
  await ok(
    call("POST", "/v1/tenants/beta/endpoints", {
      body: { name: "crm", url: `http://127.0.0.1:${receiver.port}/leads`, signing_secret: "vault:beta/crm-signing" },
    }),
  );
  await ok(
    call("POST", "/v1/tenants/beta/templates", {
      body: {
        name: "front-desk",
        instructions: "You answer mail to the front desk and log leads in the CRM.",
        model: { endpoint: `http://127.0.0.1:${model.port}/v1`, default: "llama3", api_key: "vault:beta/model-key" },
        tools: [
          { id: "email", provisioning: "pool" },
          { id: "http.crm", provisioning: "pool", config: { endpoint: "crm" } },
        ],
      },
    }),
  );
  await ok(
    call("POST", "/v1/tenants/beta/policies", {
      body: {
        name: "crm-writes",
        rules: [{ name: "a-human-logs-leads", when: { tool: "http.crm" }, effect: "require_approval" }],
      },
    }),
  );
});

afterAll(async () => {
  await app?.stop();
  model.stop(true);
  receiver.stop(true);
  rmSync(root, { recursive: true, force: true });
});

describe("agents, end to end", () => {
  let agentId = "";
  let eventId = "";

  test("a claim takes a warm, sandboxed runtime and provisions its address", async () => {
    await until("a warm runtime", async () => (await app.agents.status()).byState.ready >= 1, 20_000);
    const r = await call("POST", "/v1/tenants/beta/agents", { body: { template: "front-desk", agent: "hello" } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ agent: "hello", tenant: "beta", cold: false, template_version: 1 });
    expect(r.body.addresses.email).toBe("hello@beta.agentowl.lan");
    agentId = r.body.id;
    const status = await app.agents.status();
    if (status.isolation === "process") console.warn(`agents ran unsandboxed here: ${status.isolationReason}`);
  });

  test("mail to the agent's address becomes its task; the model's tool call waits for a human", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO client.example.com");
    const sent = await smtp.sendMail(
      "ada@example.com",
      ["hello@beta.agentowl.lan"],
      [
        "From: Ada <ada@example.com>",
        "To: hello@beta.agentowl.lan",
        "Subject: A demo, please",
        "Message-ID: <demo-1@example.com>",
        "",
        "Could someone show us the product next week?",
      ].join("\r\n"),
    );
    expect(sent.end?.code).toBe(250);
    await smtp.command("QUIT");

    await until(
      "the task is done",
      async () => {
        const events = await call("GET", "/v1/events?tenant=beta");
        const e = events.body.items?.find((x: { channel: string }) => x.channel === "email");
        if (!e) return false;
        eventId = e.id;
        const shown = await call("GET", `/v1/events/${eventId}`);
        return shown.body.deliveries?.[0]?.state === "delivered";
      },
      30_000,
    );
    const shown = await call("GET", `/v1/events/${eventId}`);
    expect(shown.body.deliveries).toMatchObject([{ endpoint: "agent:hello", state: "delivered" }]);
    // The model was asked with the key the appliance holds, never streamed, with the tools offered.
    expect(asked.length).toBe(2);
    for (const a of asked) {
      expect(a.auth).toBe(`Bearer ${MODEL_KEY}`);
      expect(a.body.stream).toBe(false);
    }
    expect((asked[0]!.body.tools as { function: { name: string } }[]).map((t) => t.function.name)).toEqual([
      "email",
      "http_crm",
    ]);
    expect(JSON.stringify(asked[1]!.body.messages)).toMatch(/waiting for a human's approval \(apr_/);
    expect(received).toEqual([]);
  });

  test("approved over the API, the call runs once with its one-shot lease and arrives signed", async () => {
    const pending = await call("GET", "/v1/approvals?tenant=beta&state=pending");
    const approval = pending.body.items.find((a: { action: { kind: string } }) => a.action.kind === "tool.call");
    expect(approval).toMatchObject({ action: { tool: "http.crm", runtime: agentId }, policy: { name: "crm-writes" } });
    const decided = await call("POST", `/v1/approvals/${approval.id}/approve`, { body: { reason: "real lead" } });
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    await until("the CRM got the lead", () => received.length === 1, 15_000);
    const [got] = received;
    expect(JSON.parse(got!.body)).toEqual({ lead: "Ada", wants: "a demo" });
    expect(() => new Webhook(SECRET).verify(got!.body, got!.headers)).not.toThrow();
    const calls = await call("GET", `/v1/approvals/${approval.id}`);
    expect(calls.body.state).toBe("approved");
  });

  test("the event's trace and its audit entries tell the whole story", async () => {
    const shown = await call("GET", `/v1/events/${eventId}`);
    expect(shown.status).toBe(200);
    const text = JSON.stringify(shown.body);
    for (const span of ["agent.dispatch", "agent.model", "tool.call", "audit.log"]) expect(text).toContain(`"${span}"`);
    const audit = await call("GET", `/v1/audit?event=${eventId}&limit=100`);
    const actions = audit.body.items.map((e: { action: string }) => e.action);
    for (const a of ["approval.request", "approval.approve", "tool.call", "delivery.attempt"])
      expect(actions, JSON.stringify(actions)).toContain(a);
    // The signing secret was leased for exactly that call, and only once.
    const toolCall = audit.body.items.find((e: { action: string }) => e.action === "tool.call");
    const leases = await call("GET", "/v1/audit?action=secret.lease&limit=100");
    const forCall = leases.body.items.filter(
      (e: { actor: string; target: string }) =>
        e.actor === `tool.call:${toolCall.details.call}` && e.target === "beta/crm-signing",
    );
    expect(forCall.length, JSON.stringify(leases.body.items)).toBe(1);
  });
});
