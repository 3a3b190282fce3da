import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { agentText, poolText } from "./agents.ts";
import type { CommandIO } from "./command.ts";
import { runCli } from "./index.ts";

const RT = "rt_01JD0000000000000000000000";
const IDLE = "rt_01JD0000000000000000000001";
const claimed = {
  id: RT,
  state: "claimed",
  destroying: false,
  isolation: "bwrap",
  tenant: "beta",
  agent: "hello",
  template: "support",
  template_version: 3,
  cold: false,
  pid: 4242,
  user_config: null,
  created_at: "2026-11-21T14:00:00.000Z",
  ready_at: "2026-11-21T14:00:01.000Z",
  claimed_at: "2026-11-21T14:05:00.000Z",
  heartbeat_at: "2026-11-21T14:06:00.000Z",
  synced_at: null,
  stuck_at: null,
  deleted_at: null,
  error: null,
};
const idle = {
  ...claimed,
  id: IDLE,
  state: "ready",
  tenant: null,
  agent: null,
  template: null,
  template_version: null,
};

// A stand-in for the API on a real socket: it records what the CLI sent and answers with the
// shapes src/api/agents.ts presents (the routes themselves are tested against a real pool).
const received: { method: string; path: string; query: string; body: unknown }[] = [];
let answer: (method: string, path: string) => Response = () => new Response(null, { status: 500 });
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const url = new URL(req.url);
    received.push({
      method: req.method,
      path: url.pathname,
      query: url.search,
      body: await req.json().catch(() => null),
    });
    return answer(req.method, url.pathname);
  },
});
const dir = mkdtempSync(join(tmpdir(), "agentowl-cli-agents-"));
afterAll(() => {
  server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  received.length = 0;
});

const problem = (status: number, detail: string, headers: Record<string, string> = {}) =>
  Response.json(
    { type: "about:blank", title: "x", status, detail },
    { status, headers: { "content-type": "application/problem+json", ...headers } },
  );

async function cli(argv: string[]) {
  let out = "";
  let err = "";
  const io: CommandIO = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    env: { AGENTOWL_URL: `http://127.0.0.1:${server.port}`, AGENTOWL_TOKEN: "aow_test", HOME: "/nonexistent" },
    cwd: dir,
    readStdin: async () => "",
  };
  const code = await runCli(argv, io);
  return { code, out, err };
}

describe("agentowl agents", () => {
  test("ls asks for the tenant and state given and shows each runtime's template@version, isolation and heartbeat", async () => {
    answer = () => Response.json({ items: [claimed, { ...idle, destroying: true }], next_cursor: null });
    const r = await cli(["agents", "ls", "-t", "beta", "--state", "claimed"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(received[0]!.path).toBe("/v1/agents");
    expect(new URLSearchParams(received[0]!.query).get("tenant")).toBe("beta");
    expect(new URLSearchParams(received[0]!.query).get("state")).toBe("claimed");
    const [header, first, second] = r.out.trimEnd().split("\n");
    expect(header!.split(/\s{2,}/)).toEqual([
      "ID",
      "STATE",
      "TENANT",
      "AGENT",
      "TEMPLATE",
      "ISOLATION",
      "HEARTBEAT",
      "SYNCED",
    ]);
    expect(first!.split(/\s{2,}/)).toEqual([
      RT,
      "claimed",
      "beta",
      "hello",
      "support@v3",
      "bwrap",
      "2026-11-21 14:06:00Z",
      "-",
    ]);
    expect(second!.split(/\s{2,}/).slice(0, 5)).toEqual([IDLE, "ready (destroying)", "-", "-", "-"]);
  });

  test("a state that is none of the runtime states is a usage error, and nothing is asked", async () => {
    const r = await cli(["agents", "ls", "--state", "claimd"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("did you mean 'claimed'?");
    expect(received).toEqual([]);
  });

  test("release without -t finds the runtime's tenant, then releases it under that tenant", async () => {
    answer = (method) => (method === "GET" ? Response.json(claimed) : Response.json({ ...claimed, state: "deleted" }));
    const r = await cli(["agents", "release", RT]);
    expect(r.code).toBe(0);
    expect(received.map((x) => `${x.method} ${x.path}`)).toEqual([
      `GET /v1/agents/${RT}`,
      `POST /v1/tenants/beta/agents/${RT}/release`,
    ]);
    expect(r.out).toBe(`released ${RT} (deleted)\n`);
  });

  test("releasing a runtime nobody claimed says so, exit 4, and asks nothing more", async () => {
    answer = () => Response.json(idle);
    const r = await cli(["agents", "release", IDLE]);
    expect(r.code).toBe(4);
    expect(r.err).toBe(`agentowl agents release: runtime ${IDLE} is ready, not claimed: nothing to release\n`);
    expect(received).toHaveLength(1);
  });

  test("an unknown runtime is one line naming it, exit 3", async () => {
    answer = () => problem(404, "not found");
    const r = await cli(["agents", "show", RT]);
    expect(r.code).toBe(3);
    expect(r.err).toBe(`agentowl agents show: runtime ${RT} not found\n`);
  });

  test("claim sends the template, the agent and the user config file, and prints where the agent is reached", async () => {
    writeFileSync(join(dir, "user.yaml"), "crm:\n  api_key: k-123\n");
    answer = () =>
      Response.json(
        {
          ...claimed,
          cold: true,
          claim_ms: 812,
          addresses: { reply: "hello@beta.mail.example" },
          tools: [],
        },
        { status: 201 },
      );
    const r = await cli([
      "agents",
      "claim",
      "-t",
      "beta",
      "--template",
      "support",
      "--agent",
      "hello",
      "-f",
      "user.yaml",
    ]);
    expect(r.code).toBe(0);
    expect(received).toEqual([
      {
        method: "POST",
        path: "/v1/tenants/beta/agents",
        query: "",
        body: { template: "support", agent: "hello", user_config: { crm: { api_key: "k-123" } } },
      },
    ]);
    expect(r.out).toBe(
      `claimed ${RT} for beta/hello (template support@v3, cold in 812 ms, isolation bwrap)\n  reply: hello@beta.mail.example\n`,
    );
  });

  test("a claim without its flags, or with a config that is not per tool, sends nothing", async () => {
    expect((await cli(["agents", "claim", "-t", "beta", "--agent", "hello"])).err).toContain("missing --template NAME");
    writeFileSync(join(dir, "flat.yaml"), "api_key: k-123\n");
    const flat = await cli(["agents", "claim", "-t", "beta", "--template", "s", "--agent", "a", "-f", "flat.yaml"]);
    expect(flat.code).toBe(1);
    expect(flat.err).toContain("must map each tool id to its settings");
    expect(received).toEqual([]);
  });

  test("an empty pool's 429 is the one line the server said, exit 1", async () => {
    answer = () => problem(429, "no runtime is ready: try again in 5 s", { "retry-after": "5" });
    const r = await cli(["agents", "claim", "-t", "beta", "--template", "support", "--agent", "hello"]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("agentowl agents claim: no runtime is ready: try again in 5 s\n");
  });

  test("sync takes a runtime or a template, not both; a template needs its tenant", async () => {
    expect((await cli(["agents", "sync", RT, "--template", "support"])).code).toBe(2);
    expect((await cli(["agents", "sync", "--template", "support"])).err).toContain("--template needs -t TENANT");
    expect(received).toEqual([]);
    answer = () => Response.json({ items: [{ ...claimed, template_version: 4, synced_at: "2026-11-21T15:00:00Z" }] });
    const r = await cli(["agents", "sync", "-t", "beta", "--template", "support"]);
    expect(received.map((x) => [x.method, x.path, x.body])).toEqual([
      ["POST", "/v1/tenants/beta/agents/sync", { template: "support" }],
    ]);
    expect(r.out).toBe(`synced ${RT} (hello) to support@v4 at 2026-11-21 15:00:00Z\n`);
  });

  test("pool --min-idle takes a whole number and PUTs it", async () => {
    expect((await cli(["agents", "pool", "--min-idle", "two"])).code).toBe(2);
    expect(received).toEqual([]);
    const status = {
      min_idle: 3,
      isolation: "bwrap",
      isolation_reason: null,
      on_empty: "cold",
      by_state: { starting: 1, ready: 2, claimed: 5, stuck: 0, deleted: 9 },
    };
    answer = () => Response.json(status);
    const r = await cli(["agents", "pool", "--min-idle", "3"]);
    expect(received.map((x) => [x.method, x.path, x.body])).toEqual([["PUT", "/v1/agents/pool", { min_idle: 3 }]]);
    expect(r.out).toBe(poolText(status));
    expect(r.out).toContain("runtimes:  starting 1, ready 2, claimed 5, stuck 0, deleted 9");
  });

  test("logs print each line with its time and stream, control characters made harmless", async () => {
    answer = () =>
      Response.json({ items: [{ at: "2026-11-21T14:06:00.000Z", stream: "stderr", line: "model said \u001b[31mno" }] });
    const r = await cli(["agents", "logs", RT, "-t", "beta"]);
    expect(received[0]!.path).toBe(`/v1/tenants/beta/agents/${RT}/logs`);
    expect(r.out).toBe("2026-11-21 14:06:00Z  stderr  model said ?[31mno\n");
  });
});

describe("what agents show and pool say", () => {
  test("a runtime with its addresses and tools", () => {
    const text = agentText({
      ...claimed,
      synced_at: "2026-11-21T15:00:00Z",
      addresses: { reply: "hello@beta.mail.example" },
      tools: [
        {
          tool: "reply",
          plugin: "email",
          provisioning: "pool",
          state: "active",
          resource_id: "hello@beta.mail.example",
          secret_ref: null,
        },
      ],
    });
    expect(text).toContain(`runtime:   ${RT} (claimed; tenant beta)\n`);
    expect(text).toContain("template:  support@v3 (synced 2026-11-21 15:00:00Z)\n");
    expect(text).toContain("claimed:   2026-11-21 14:05:00Z (warm)\n");
    expect(text).toContain("addresses:\n  reply: hello@beta.mail.example\n");
    expect(text).toMatch(/TOOL\s+PLUGIN\s+PROVISIONING\s+STATE\s+RESOURCE\s+SECRET\nreply\s+email\s+pool\s+active/);
  });

  test("a pool without a sandbox says why", () => {
    expect(
      poolText({
        min_idle: 2,
        isolation: "process",
        isolation_reason: "bwrap: no user namespaces",
        on_empty: "429",
        by_state: {},
      }),
    ).toBe(
      "min_idle:  2\n" +
        "isolation: process (no sandbox: bwrap: no user namespaces)\n" +
        "on empty:  answer 429 with Retry-After\n" +
        "runtimes:  starting 0, ready 0, claimed 0, stuck 0, deleted 0\n",
    );
  });
});
