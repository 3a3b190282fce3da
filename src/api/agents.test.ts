import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openapi } from "@elysiajs/openapi";
import { Elysia } from "elysia";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentPool, RuntimeRecord, ToolRecord } from "../agents/types.ts";
import { ManualClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import { createHttpApp } from "../server/server.ts";
import { openSqliteStorage, type SqliteStorage } from "../store/index.ts";
import { addressesOf, agentRoutes, presentRuntime, stateOf } from "./agents.ts";
import { generateToken, sha256Hex } from "./auth.ts";

/**
 * What the agent routes decide by themselves, before the pool is asked: authentication, tenant
 * scopes, request validation (problem+json), and their place in the OpenAPI document. The pool
 * here refuses to be reached at all: any request that got to it would answer 500, not the 4xx
 * these tests expect. The routes against a real pool are tested end to end (test/e2e).
 */
const unreachable = new Proxy({} as AgentPool, {
  get: (_, method) => () => {
    throw new Error(`the pool was asked ${String(method)}`);
  },
});

let dir: string;
let storage: SqliteStorage;
let server: { stop(): unknown; server: { port: number } | null } | null = null;
let base = "";
const tokens: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "agentowl-agents-api-"));
  storage = openSqliteStorage({ dir });
  const clock = new ManualClock();
  for (const [name, scopes] of [
    ["admin", ["admin"]],
    ["alphaRead", ["tenant:alpha:read"]],
    ["alphaWrite", ["tenant:alpha:write"]],
  ] as const) {
    const token = generateToken();
    await storage.tokens.create({
      name,
      hash: sha256Hex(token),
      scopes: [...scopes],
      expiresAt: null,
      createdBy: "test",
    });
    tokens[name] = token;
  }
  await storage.resources.transact((tx) =>
    storage.resources.putTx(
      tx,
      { tenant: "alpha", kind: "tenants", name: "alpha" },
      { name: "alpha" },
      {
        mode: "create",
        actor: "test",
      },
    ),
  );
  const app = createHttpApp({
    log: silentLogger,
    metrics: new Metrics(),
    version: "test",
    ready: async () => ({}),
  }).use(
    new Elysia({ prefix: "/v1", normalize: false }).use(openapi({ provider: null, specPath: "/openapi.json" })).use(
      agentRoutes({
        pool: unreachable,
        tools: () => [],
        resources: storage.resources,
        tokens: storage.tokens,
        clock,
      }),
    ),
  );
  app.listen({ hostname: "127.0.0.1", port: 0 });
  server = app as unknown as typeof server;
  base = `http://127.0.0.1:${app.server!.port}`;
});

afterAll(async () => {
  server?.stop();
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
});

async function call(method: string, path: string, opts: { token?: string | null; body?: unknown; raw?: string } = {}) {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? tokens.admin : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined || opts.raw !== undefined) {
    body = opts.raw ?? JSON.stringify(opts.body);
    headers["content-type"] = "application/json";
  }
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type"), body: text ? JSON.parse(text) : null };
}

const RT = "rt_01JD0000000000000000000000";

describe("the agent routes refuse before the pool is asked", () => {
  test("without a token every route is 401 problem+json", async () => {
    for (const [method, path] of [
      ["GET", "/v1/agents"],
      ["GET", "/v1/tools"],
      ["GET", "/v1/agents/pool"],
      ["POST", "/v1/tenants/alpha/agents"],
      ["DELETE", `/v1/tenants/alpha/agents/${RT}`],
    ] as const) {
      const r = await call(method, path, { token: null, body: method === "POST" ? {} : undefined });
      expect(r.status, `${method} ${path}`).toBe(401);
      expect(r.type).toBe("application/problem+json");
    }
  });

  test("another tenant's routes are 404 and a read token's writes 403, whatever the body", async () => {
    const other = await call("POST", "/v1/tenants/beta/agents", { token: tokens.alphaWrite, body: { nonsense: 1 } });
    expect(other.status).toBe(404);
    expect((await call("GET", `/v1/tenants/beta/agents/${RT}`, { token: tokens.alphaWrite })).status).toBe(404);
    const read = await call("POST", "/v1/tenants/alpha/agents", { token: tokens.alphaRead, body: { nonsense: 1 } });
    expect(read.status).toBe(403);
    expect(read.body.detail).toBe("this token may only read tenant alpha");
    expect((await call("POST", `/v1/tenants/alpha/agents/${RT}/release`, { token: tokens.alphaRead })).status).toBe(
      403,
    );
  });

  test("the pool's size is an admin's: a tenant token's PUT is 403 before its body is read", async () => {
    expect((await call("GET", "/v1/agents/pool", { token: tokens.alphaWrite })).status).toBe(403);
    const r = await call("PUT", "/v1/agents/pool", { token: tokens.alphaWrite, raw: "{not json" });
    expect(r.status).toBe(403);
  });

  test("a claim names a template and an agent, and nothing else: each mistake is a 422 naming its field", async () => {
    const cases: [unknown, string][] = [
      [{ template: "support" }, "/agent"],
      [{ agent: "hello" }, "/template"],
      [{ template: "support", agent: "Hello World" }, "/agent"],
      [{ template: "../x", agent: "hello" }, "/template"],
      [{ template: "support", agent: "hello", extra: true }, "/extra"],
      [{ template: "support", agent: "hello", user_config: { reply: "not an object" } }, "/user_config/reply"],
    ];
    for (const [body, field] of cases) {
      const r = await call("POST", "/v1/tenants/alpha/agents", { token: tokens.alphaWrite, body });
      expect(r.status, JSON.stringify(body)).toBe(422);
      expect(r.type).toBe("application/problem+json");
      expect(
        r.body.errors.map((e: { field: string }) => e.field),
        JSON.stringify(body),
      ).toContain(field);
    }
    const media = await fetch(`${base}/v1/tenants/alpha/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.alphaWrite}`, "content-type": "text/plain" },
      body: "x",
    });
    expect(media.status).toBe(415);
  });

  test("min_idle is a whole number from 0 to 1000", async () => {
    for (const min_idle of [-1, 1.5, 1001, "2"]) {
      const r = await call("PUT", "/v1/agents/pool", { body: { min_idle } });
      expect(r.status, `${String(min_idle)}: ${JSON.stringify(r.body)}`).toBe(422);
      expect(r.body.errors[0].field).toBe("/min_idle");
    }
  });

  test("a sync of a template names it; a list's state and cursor are checked", async () => {
    const sync = await call("POST", "/v1/tenants/alpha/agents/sync", { token: tokens.alphaWrite, body: {} });
    expect(sync.status).toBe(422);
    expect((await call("GET", "/v1/agents?state=sleeping")).status).toBe(400);
    expect((await call("GET", "/v1/agents?cursor=bm9wZQ")).status).toBe(400);
    expect((await call("GET", "/v1/agents?limit=0")).status).toBe(400);
  });

  test("an id that is no runtime id, and a tenant that does not exist, are 404", async () => {
    expect((await call("GET", "/v1/agents/not-an-id")).status).toBe(404);
    expect((await call("GET", "/v1/tenants/alpha/agents/evt_01JD0000000000000000000000")).status).toBe(404);
    expect((await call("DELETE", "/v1/agents/rt_x")).status).toBe(404);
    expect((await call("GET", "/v1/tenants/gamma/agents")).status).toBe(404);
    expect((await call("POST", "/v1/tenants/gamma/agents", { body: { template: "t", agent: "a" } })).status).toBe(404);
  });
});

describe("the agent routes in the OpenAPI document", () => {
  test("every route is documented, the claim's, sync's and pool's bodies with their fields", async () => {
    const doc = (await call("GET", "/v1/openapi.json", { token: null })).body;
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(documented.filter((x) => x.includes(" /v1/") && !x.includes("openapi")).sort()).toEqual(
      [
        "GET /v1/agents",
        "GET /v1/agents/pool",
        "PUT /v1/agents/pool",
        "GET /v1/agents/{id}",
        "DELETE /v1/agents/{id}",
        "GET /v1/agents/{id}/logs",
        "GET /v1/tools",
        "GET /v1/tenants/{tenant}/agents",
        "POST /v1/tenants/{tenant}/agents",
        "POST /v1/tenants/{tenant}/agents/sync",
        "GET /v1/tenants/{tenant}/agents/{id}",
        "DELETE /v1/tenants/{tenant}/agents/{id}",
        "GET /v1/tenants/{tenant}/agents/{id}/logs",
        "POST /v1/tenants/{tenant}/agents/{id}/release",
        "POST /v1/tenants/{tenant}/agents/{id}/sync",
      ].sort(),
    );
    const body = (path: string, method: string) => JSON.stringify(doc.paths[path][method].requestBody);
    for (const field of ["template", "agent", "user_config"])
      expect(body("/v1/tenants/{tenant}/agents", "post")).toContain(field);
    expect(body("/v1/tenants/{tenant}/agents/sync", "post")).toContain("template");
    expect(body("/v1/agents/pool", "put")).toContain("min_idle");
  });
});

describe("what the API shows of a runtime", () => {
  const runtime: RuntimeRecord = {
    id: RT,
    state: "claimed",
    isolation: "bwrap",
    tenant: "alpha",
    agent: "hello",
    template: "support",
    templateVersion: 3,
    userConfig: { reply: { signature: "Ann" } },
    tokenHash: "a".repeat(64),
    dir: "/var/lib/agentowl/agents/rt/x",
    socket: "/var/lib/agentowl/agents/run/x.sock",
    pid: 42,
    cold: false,
    createdAt: Date.UTC(2026, 10, 21, 14, 0, 0),
    readyAt: Date.UTC(2026, 10, 21, 14, 0, 1),
    claimedAt: Date.UTC(2026, 10, 21, 14, 5, 0),
    heartbeatAt: Date.UTC(2026, 10, 21, 14, 6, 0),
    syncedAt: null,
    stuckAt: null,
    deletedAt: null,
    destroying: false,
    error: null,
    node: null,
  };

  test("never its token's hash nor its paths; times as ISO 8601", () => {
    const shown = presentRuntime(runtime);
    const text = JSON.stringify(shown);
    expect(text).not.toContain(runtime.tokenHash);
    expect(text).not.toContain("/var/lib");
    expect(shown).toMatchObject({
      id: RT,
      template: "support",
      template_version: 3,
      claimed_at: "2026-11-21T14:05:00.000Z",
      synced_at: null,
    });
  });

  test("its addresses are what its active tools provisioned, by tool id", () => {
    const tool = (t: Partial<ToolRecord>): ToolRecord => ({
      id: "x",
      runtimeId: RT,
      tenant: "alpha",
      tool: "reply",
      plugin: "email",
      provisioning: "pool",
      state: "active",
      resourceId: "hello@alpha.example.org",
      config: {},
      secretRef: null,
      createdAt: 0,
      updatedAt: 0,
      ...t,
    });
    expect(
      addressesOf([
        tool({}),
        tool({ tool: "hook", plugin: "webhook", resourceId: "agent-hello" }),
        tool({ tool: "old", state: "destroyed", resourceId: "gone" }),
        tool({ tool: "new", state: "creating", resourceId: null }),
      ]),
    ).toEqual({ reply: "hello@alpha.example.org", hook: "agent-hello" });
  });

  test("a state filter takes the runtime states only", () => {
    expect(stateOf(undefined)).toBeUndefined();
    expect(stateOf("claimed")).toBe("claimed");
    expect(() => stateOf("sleeping")).toThrow("state must be one of starting, ready, claimed, stuck, deleted");
  });
});
