/**
 * What a runtime may not do (docs/agents.md#isolation), tried by a real runtime over its real
 * socket: a program of its own (Python, speaking docs/runtime-protocol.md) that, once configured,
 * asks for a tool and a secret its template does not list, a tool to provision that is not there,
 * and the secret it is allowed. Each refusal is answered `forbidden` and audited; the allowed secret
 * is leased (audited too). And a connection to a runtime's socket with another runtime's token is
 * refused and audited.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { loopbackConfig } from "../helpers/app.ts";
import { until } from "../helpers/storage.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-agents-refusals-2b4d6f8a0c1e3a5c";
const root = mkdtempSync(join(tmpdir(), "agentowl-agents-refusals-"));
let app: App;
const call = apiCaller(() => app.url, BOOTSTRAP);

/** Configured, it makes its requests one by one and prints each answer as a JSON line. */
const PROBE = `
import json, os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["AGENTOWL_RUNTIME_SOCKET"])
f = s.makefile("r", encoding="utf-8")
def send(m): s.sendall((json.dumps(m) + "\\n").encode())
asks = [
  {"type": "tool.call", "tool": "shell.exec", "args": {"cmd": "id"}},
  {"type": "secret.get", "ref": "vault:beta/not-mine"},
  {"type": "tool.provision", "tool": "nope"},
  {"type": "secret.get", "ref": "vault:beta/allowed"},
  {"type": "tool.provision", "tool": "email"},
]
for line in f:
  m = json.loads(line)
  if m["type"] == "hello":
    send({"id": m["id"], "type": "result", "ok": True, "result": {"token": os.environ["AGENTOWL_RUNTIME_TOKEN"]}})
  elif m["type"] == "configure":
    send({"id": m["id"], "type": "result", "ok": True, "result": {}})
    for i, a in enumerate(asks):
      send(dict(a, id=1000 + i))
  elif m["type"] == "result":
    print(json.dumps({"ask": m["id"] - 1000, "ok": m["ok"], "answer": m.get("result") or m.get("error")}), flush=True)
`;

beforeAll(async () => {
  const config = loopbackConfig(root, BOOTSTRAP, { AGENTOWL_AGENTS_MIN_IDLE: "1" });
  app = await startApp({ config, log: silentLogger });
  const ok = async (r: Promise<{ status: number; body: unknown }>) => {
    const res = await r;
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
  };
  await ok(call("POST", "/v1/tenants", { body: { name: "beta" } }));
  for (const name of ["allowed", "not-mine"])
    await ok(call("PUT", `/v1/tenants/beta/secrets/${name}`, { body: { value: `value-of-${name}` } }));
  const model = { endpoint: "http://127.0.0.1:9/v1", default: "m" };
  await ok(
    call("POST", "/v1/tenants/beta/templates", {
      body: {
        name: "probe",
        instructions: "-",
        model,
        command: ["/usr/bin/python3", "-c", PROBE],
        secrets: ["vault:beta/allowed"],
      },
    }),
  );
  await ok(call("POST", "/v1/tenants/beta/templates", { body: { name: "plain", instructions: "-", model } }));
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

const audit = async (action: string) =>
  (await call("GET", `/v1/audit?action=${action}&limit=100`)).body.items as {
    actor: string;
    target: string;
    decision: string | null;
    details: Record<string, unknown>;
  }[];

test("a tool, a secret or a provisioning outside its template is refused and audited; a listed secret is leased; a tool the synced template adds, the runtime provisions itself", async () => {
  const claimed = await call("POST", "/v1/tenants/beta/agents", { body: { template: "probe", agent: "prober" } });
  expect(claimed.status, JSON.stringify(claimed.body)).toBe(201);
  const id = claimed.body.id as string;
  const answers = () =>
    app.agents
      .logs(id)
      .filter((l) => l.stream === "stdout")
      .map((l) => JSON.parse(l.line) as { ask: number; ok: boolean; answer: Record<string, unknown> });
  await until("the probe's five answers", () => answers().length === 5, 20_000);
  const byAsk = answers().sort((a, b) => a.ask - b.ask);
  expect(byAsk[4]).toMatchObject({ ok: false, answer: { code: "forbidden" } });
  expect(byAsk[0]).toMatchObject({ ok: true, answer: { status: "refused" } });
  expect(String(byAsk[0]!.answer.reason)).toContain("shell.exec is not in the template");
  expect(byAsk[1]).toMatchObject({ ok: false, answer: { code: "forbidden" } });
  expect(byAsk[2]).toMatchObject({ ok: false, answer: { code: "forbidden" } });
  expect(byAsk[3]).toMatchObject({ ok: true, answer: { value: "value-of-allowed" } });

  expect((await audit("tool.refused")).map((e) => [e.actor, e.target])).toEqual(
    expect.arrayContaining([[`runtime:${id}`, expect.stringContaining("nope")]]),
  );
  const toolRefusals = await audit("tool.refused");
  expect(toolRefusals.some((e) => JSON.stringify(e).includes("shell.exec"))).toBe(true);
  const secretRefusals = await audit("secret.refused");
  expect(secretRefusals.map((e) => [e.actor, e.target, e.decision])).toEqual([
    [`runtime:${id}`, "vault:beta/not-mine", "deny"],
  ]);
  const leases = await audit("secret.lease");
  expect(leases.filter((e) => e.actor === `runtime:${id}`).map((e) => e.target)).toEqual(["beta/allowed"]);

  // The template gains an email tool; synced, the runtime is configured again and provisions it itself.
  const probe = (await call("GET", "/v1/tenants/beta/templates/probe")).body;
  const { resource_version: _v, ...spec } = probe as Record<string, unknown>;
  const put = await call("PUT", "/v1/tenants/beta/templates/probe", {
    body: { ...spec, tools: [{ id: "email", provisioning: "pool" }] },
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  expect((await call("POST", `/v1/tenants/beta/agents/${id}/sync`)).status).toBe(200);
  await until("the probe's answers after the sync", () => answers().length === 10, 20_000);
  const again = answers()
    .slice(5)
    .sort((a, b) => a.ask - b.ask);
  expect(again[4]).toMatchObject({ ok: true, answer: { address: "prober@beta.agentowl.lan" } });
  const tools = (await app.storage.agents.listTools(id)).filter((t) => t.state === "active");
  expect(tools.map((t) => [t.tool, t.resourceId])).toEqual([["email", "prober@beta.agentowl.lan"]]);
});

test("a connection to a runtime's socket with another runtime's token is refused and audited", async () => {
  const a = await call("POST", "/v1/tenants/beta/agents", { body: { template: "plain", agent: "a" } });
  const b = await call("POST", "/v1/tenants/beta/agents", { body: { template: "plain", agent: "b" } });
  expect([a.status, b.status]).toEqual([201, 201]);
  const rowA = (await app.storage.agents.getRuntime(a.body.id))!;
  // B's token is known only to B: a token that hashes to B's row stands for it.
  const socket = connect(rowA.socket);
  let said = "";
  socket.setEncoding("utf8").on("data", (d: string) => {
    said += d;
    const hello = said.split("\n").find((l) => l.includes('"hello"'));
    if (hello)
      socket.write(
        `${JSON.stringify({ id: JSON.parse(hello).id, type: "result", ok: true, result: { token: "b-token-guess" } })}\n`,
      );
  });
  socket.on("error", () => {});
  await until("the socket is closed on the impostor", () => socket.destroyed || socket.readableEnded, 10_000);
  const refused = await audit("agent.refused");
  expect(refused.some((e) => e.target === rowA.id)).toBe(true);
  // A still works: its own connection was never replaced.
  expect(app.agents.channel(rowA.id)).not.toBeNull();
});
