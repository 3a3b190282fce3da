import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { type Clock, ManualClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import type { Storage } from "../store/index.ts";
import { alive, recordingProvisioner, SILENT_RUNTIME, sandboxLauncher } from "../../test/helpers/agents.ts";
import { tempStorages, until } from "../../test/helpers/storage.ts";
import { openChannel } from "./channel.ts";
import { agentMetrics } from "./metrics.ts";
import { Pool, type PoolSettings } from "./pool.ts";
import { tick } from "./tick.ts";

const storages = tempStorages();
const pools: Pool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});

const SETTINGS: PoolSettings = {
  minIdle: 2,
  maxRuntimes: 64,
  onEmpty: "cold",
  retryAfterMs: 5000,
  stuckTimeoutMs: 60_000,
  helloTimeoutMs: 10_000,
  memoryBytes: 256 * 1024 * 1024,
};

const TEMPLATE = {
  name: "helper",
  instructions: "You answer mail.",
  model: { endpoint: "http://127.0.0.1:11434/v1", default: "llama3" },
  tools: [{ id: "email", provisioning: "pool" }],
};

async function putTemplate(storage: Storage, tenant: string, name: string, spec: Record<string, unknown>) {
  await storage.resources.transact((tx) =>
    storage.resources.putTx(tx, { tenant, kind: "templates", name }, spec, { mode: "upsert", actor: "test" }),
  );
}

function makePool(
  opts: {
    settings?: Partial<PoolSettings>;
    command?: readonly string[];
    clock?: Clock;
    isolation?: "process";
    storage?: ReturnType<typeof storages>;
  } = {},
) {
  const storage = opts.storage ?? storages(opts.clock ? { clock: opts.clock } : {});
  const tools = recordingProvisioner(storage);
  const registry = new Registry();
  const metrics = agentMetrics(registry, () => storage.agents.countByState());
  const launcher = sandboxLauncher(opts.isolation);
  const pool = new Pool({
    storage,
    dataDir: storage.dir,
    settings: { ...SETTINGS, ...opts.settings },
    ...sandboxLauncher(opts.isolation),
    launch: (spec) => launcher.launch(opts.command && !spec.command ? { ...spec, command: opts.command } : spec),
    openChannel,
    tools,
    log: silentLogger,
    clock: opts.clock,
    metrics,
  });
  pools.push(pool);
  return { pool, storage, tools, registry, metrics };
}

const count = async (storage: Storage) => storage.agents.countByState();

describe("claims", () => {
  test("a warm claim is one commit (the runtime, its audit entry, every tool's row), one more makes its tools active, and its refill starts only after it answered", async () => {
    const { pool, storage } = makePool({ settings: { minIdle: 1 } });
    await putTemplate(storage, "acme", "bare", { ...TEMPLATE, tools: [] });
    await putTemplate(storage, "acme", "helper", {
      ...TEMPLATE,
      tools: [
        { id: "email", provisioning: "pool" },
        { id: "http.crm", provisioning: "pool" },
      ],
    });
    for (const [template, commits] of [
      ["bare", 1],
      ["helper", 2],
    ] as const) {
      await pool.refill();
      expect(await count(storage)).toMatchObject({ ready: 1, starting: 0 });
      const before = storage.committer.stats().commits;
      const { runtime, cold, tools } = await pool.claim({ tenant: "acme", template, agent: template }, "t");
      expect(storage.committer.stats().commits - before).toBe(commits);
      expect(cold).toBe(false);
      expect(tools.map((t) => t.state)).toEqual(template === "bare" ? [] : ["active", "active"]);
      // Answered before the refill wrote anything: no runtime is starting yet.
      expect(await count(storage)).toMatchObject({ ready: 0, starting: 0 });
      const [entry] = await storage.audit.list({ action: "agent.claim", limit: 1 });
      expect(entry).toMatchObject({ actor: "t", tenant: "acme", target: runtime.id });
      await until("the refill the claim started once it answered", async () => (await count(storage)).ready === 1);
    }
  });

  test("a warm claim whose COMMIT fails destroys the runtime it configured while the commit was written", async () => {
    const { pool, storage } = makePool({ settings: { minIdle: 1 } });
    await putTemplate(storage, "acme", "bare", { ...TEMPLATE, tools: [] });
    await pool.refill();
    const [ready] = await storage.agents.listRuntimes({ state: "ready", limit: 1 });
    const configured: string[] = [];
    pool.channel(ready!.id)!.onActivity(() => configured.push(ready!.id));
    // A real COMMIT failure: claiming writes a row that breaks a deferred foreign key, checked only at COMMIT.
    const sqlite = (storage as unknown as { handle: { sqlite: import("bun:sqlite").Database } }).handle.sqlite;
    sqlite.run("PRAGMA foreign_keys = ON");
    sqlite.run("CREATE TABLE t_parent (id text PRIMARY KEY)");
    sqlite.run("CREATE TABLE t_child (p text REFERENCES t_parent (id) DEFERRABLE INITIALLY DEFERRED)");
    sqlite.run(
      "CREATE TRIGGER t_claimed AFTER UPDATE OF state ON agent_runtimes WHEN NEW.state = 'claimed' " +
        "BEGIN INSERT INTO t_child VALUES ('missing'); END",
    );
    await expect(pool.claim({ tenant: "acme", template: "bare", agent: "bot" }, "t")).rejects.toThrow();
    // It had been configured for acme (its answer came), and no other claim may take it now.
    expect(configured.length).toBeGreaterThan(0);
    expect((await storage.agents.getRuntime(ready!.id))?.state).toBe("deleted");
    expect(await storage.agents.findClaimed("acme", "bot")).toBeNull();
  });

  test("20 concurrent claims on a pool of min_idle 5 get 20 distinct runtimes: 5 warm, 15 cold", async () => {
    const { pool, storage, metrics } = makePool({ settings: { minIdle: 5 } });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await pool.refill();
    expect((await count(storage)).ready).toBe(5);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        pool.claim({ tenant: "acme", template: "helper", agent: `a${i}` }, "token:test"),
      ),
    );
    expect(new Set(results.map((r) => r.runtime.id)).size).toBe(20);
    expect(results.filter((r) => !r.cold).length).toBe(5);
    expect(results.filter((r) => r.cold).length).toBe(15);
    for (const r of results) {
      expect(r.runtime).toMatchObject({ state: "claimed", tenant: "acme", template: "helper", templateVersion: 1 });
      expect(r.addresses.email).toBe(`${r.runtime.agent}@acme.test`);
    }
    expect((await metrics.claims.get()).values.map((v) => [v.labels.kind, v.value]).sort()).toEqual([
      ["cold", 15],
      ["warm", 5],
    ]);
    // The claims started the refill at once: the pool is back to 5 ready without a tick.
    await until("the pool refilled", async () => (await count(storage)).ready === 5, 20_000);
    const audited = await storage.audit.list({ action: "agent.claim", limit: 100 });
    expect(audited.length).toBe(20);
  });

  test("an agent name is claimed once per tenant; a template that requires a sandbox is refused without one", async () => {
    const { pool, storage } = makePool({ settings: { minIdle: 1 }, isolation: "process" });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await putTemplate(storage, "acme", "strict", { ...TEMPLATE, name: "strict", sandbox: "required" });
    await pool.refill();
    await pool.claim({ tenant: "acme", template: "helper", agent: "bot" }, "t");
    await expect(pool.claim({ tenant: "acme", template: "helper", agent: "bot" }, "t")).rejects.toMatchObject({
      kind: "conflict",
    });
    await expect(pool.claim({ tenant: "acme", template: "strict", agent: "other" }, "t")).rejects.toMatchObject({
      kind: "conflict",
      detail: expect.stringContaining("requires a sandbox"),
    });
    await expect(pool.claim({ tenant: "acme", template: "nope", agent: "x" }, "t")).rejects.toMatchObject({
      kind: "not_found",
    });
  });

  test("a tenant claims another tenant's shared template, never a private one", async () => {
    const { pool, storage } = makePool({ settings: { minIdle: 0 } });
    await putTemplate(storage, "owner", "shared-helper", { ...TEMPLATE, name: "shared-helper", visibility: "shared" });
    await putTemplate(storage, "owner", "private", { ...TEMPLATE, name: "private" });
    const r = await pool.claim({ tenant: "beta", template: "shared-helper", agent: "bot" }, "t");
    expect(r.runtime.template).toBe("owner/shared-helper");
    expect(r.cold).toBe(true);
    await expect(pool.claim({ tenant: "beta", template: "private", agent: "b2" }, "t")).rejects.toMatchObject({
      kind: "not_found",
    });
    await expect(pool.claim({ tenant: "beta", template: "owner/private", agent: "b2" }, "t")).rejects.toMatchObject({
      kind: "not_found",
    });
  });

  test("with the pool empty and agents_on_empty 429, a claim is refused with Retry-After and starts the refill", async () => {
    const { pool, storage } = makePool({ settings: { minIdle: 1, onEmpty: "429", retryAfterMs: 7000 } });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await expect(pool.claim({ tenant: "acme", template: "helper", agent: "bot" }, "t")).rejects.toMatchObject({
      kind: "rate_limited",
      retryAfter: 7,
    });
    await until("the refill the claim started", async () => (await count(storage)).ready === 1);
    expect((await pool.claim({ tenant: "acme", template: "helper", agent: "bot" }, "t")).cold).toBe(false);
  });

  test("user config: non-secret entries stay on the row, a user tool's credentials go to provisioning only", async () => {
    const { pool, storage, tools } = makePool({ settings: { minIdle: 0 } });
    await putTemplate(storage, "acme", "helper", {
      ...TEMPLATE,
      tools: [
        { id: "email", provisioning: "pool" },
        { id: "sms", provisioning: "user" },
      ],
    });
    let seen: unknown = null;
    const plan = tools.planTools;
    tools.planTools = (req) => {
      seen = req.credentials;
      return plan(req);
    };
    const r = await pool.claim(
      {
        tenant: "acme",
        template: "helper",
        agent: "bot",
        userConfig: { email: { signature: "b" }, sms: { from: "+1555", credentials: { key: "k" } } },
      },
      "t",
    );
    expect(r.runtime.userConfig).toEqual({ email: { signature: "b" }, sms: { from: "+1555" } });
    expect(seen).toEqual({ sms: { key: "k" } });
  });
});

describe("release and destroy", () => {
  test("release destroys the tools first, then the process, then the directory; the token is revoked", async () => {
    const { pool, storage, tools } = makePool({ settings: { minIdle: 1 } });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await pool.refill();
    const { runtime } = await pool.claim({ tenant: "acme", template: "helper", agent: "bot" }, "token:a");
    expect(runtime.pid).not.toBeNull();
    expect(alive(runtime.pid!)).toBe(true);
    expect(existsSync(runtime.dir)).toBe(true);
    await expect(pool.release("beta", runtime.id, "token:a")).rejects.toMatchObject({ kind: "not_found" });
    const released = await pool.release("acme", runtime.id, "token:a");
    expect(released).toMatchObject({ state: "deleted", destroying: false, tokenHash: "revoked", pid: null });
    const destroyEvent = tools.events.find((e) => e.what === "destroy" && e.runtime === runtime.id);
    expect(destroyEvent).toMatchObject({ processAlive: true, dirExists: true });
    expect(destroyEvent!.tools.length).toBe(1);
    expect(alive(runtime.pid!)).toBe(false);
    expect(existsSync(runtime.dir)).toBe(false);
    expect(existsSync(runtime.socket)).toBe(false);
    expect((await storage.agents.listTools(runtime.id)).map((t) => t.state)).toEqual(["destroyed"]);
    expect(pool.channel(runtime.id)).toBeNull();
    const [entry] = await storage.audit.list({ action: "agent.release", limit: 1 });
    expect(entry).toMatchObject({ actor: "token:a", tenant: "acme", target: runtime.id });
    // Destroying a deleted runtime again is a no-op answer.
    expect((await pool.destroy(null, runtime.id, "token:a")).state).toBe("deleted");
  });

  test("destroying a warm runtime starts the refill at once, not at the next tick", async () => {
    // No tick runs in these tests: without the destroy's own refill the pool would stay one short
    // until the next agents_tick_interval.
    const { pool, storage } = makePool({ settings: { minIdle: 2 } });
    await putTemplate(storage, "acme", "bare", { ...TEMPLATE, tools: [] });
    await pool.refill();
    const [warm] = await storage.agents.listRuntimes({ state: "ready", limit: 1 });
    expect((await pool.destroy(null, warm!.id, "op")).state).toBe("deleted");
    await until("the pool back at min_idle after the destroy", async () => (await count(storage)).ready === 2);
    expect((await storage.agents.getRuntime(warm!.id))?.state).toBe("deleted");
  });

  test("sync re-sends the template's current version and records when", async () => {
    const clock = new ManualClock(Date.now());
    const { pool, storage } = makePool({ settings: { minIdle: 0 }, clock });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    const { runtime } = await pool.claim({ tenant: "acme", template: "helper", agent: "bot" }, "t");
    await putTemplate(storage, "acme", "helper", { ...TEMPLATE, instructions: "Be brief." });
    clock.advance(1000);
    const [synced] = await pool.sync("acme", { template: "helper" }, "user:ann");
    expect(synced).toMatchObject({ id: runtime.id, templateVersion: 2, syncedAt: clock.now() });
    await expect(pool.sync("beta", { id: runtime.id }, "t")).rejects.toMatchObject({ kind: "not_found" });
    expect((await storage.audit.list({ action: "agent.sync", limit: 1 }))[0]?.details).toMatchObject({
      from: 1,
      to: 2,
    });
  });
});

describe("tick", () => {
  test("a ready runtime killed with SIGKILL is marked stuck and replaced within one tick", async () => {
    const { pool, storage, metrics } = makePool({ settings: { minIdle: 2 } });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await pool.refill();
    const [victim] = await storage.agents.listRuntimes({ state: "ready", limit: 1 });
    process.kill(victim!.pid!, "SIGKILL");
    await until("the pool saw the exit", () => pool.liveness(victim!.id).exited);
    const report = await tick(pool);
    expect(report).toEqual({ stuck: 1, destroyed: 1 });
    expect(await storage.agents.getRuntime(victim!.id)).toMatchObject({ state: "deleted" });
    expect((await count(storage)).ready).toBe(2);
    expect(existsSync(victim!.dir)).toBe(false);
    expect((await metrics.stuck.get()).values[0]?.value).toBe(1);
    expect((await metrics.replaced.get()).values[0]?.value).toBe(1);
    const [stuck] = await storage.audit.list({ action: "agent.stuck", limit: 1 });
    expect(stuck?.details).toMatchObject({ reason: "its process exited", was: "ready" });
  });

  test("a runtime that stops heartbeating is stuck once agents_stuck_timeout has passed, not before", async () => {
    const clock = new ManualClock(Date.now());
    const { pool, storage } = makePool({
      settings: { minIdle: 1 },
      command: SILENT_RUNTIME,
      clock,
      // Bun is under /work here, which a bwrap sandbox mounts over: a test's own command runs unsandboxed.
      isolation: "process",
    });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await pool.refill();
    const [quiet] = await storage.agents.listRuntimes({ state: "ready", limit: 1 });
    clock.advance(59_000);
    expect(await tick(pool)).toEqual({ stuck: 0, destroyed: 0 });
    clock.advance(2000);
    expect(await tick(pool)).toEqual({ stuck: 1, destroyed: 1 });
    expect((await storage.agents.getRuntime(quiet!.id))?.state).toBe("deleted");
    expect((await count(storage)).ready).toBe(1);
  });

  test("heartbeats of a live runtime keep it from being stuck and reach its row at the tick", async () => {
    const clock = new ManualClock(Date.now());
    const { pool, storage } = makePool({ settings: { minIdle: 1, helloTimeoutMs: 10_000 }, clock });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await pool.refill();
    const [rt] = await storage.agents.listRuntimes({ state: "ready", limit: 1 });
    const channel = pool.channel(rt!.id)!;
    clock.advance(50_000);
    // Any message counts: a request answered by the runtime is one.
    await channel
      .request("configure", { tenant: "acme", agent: "x", template: TEMPLATE, user_config: {} }, 5000)
      .catch(() => {});
    clock.advance(20_000);
    expect(await tick(pool)).toEqual({ stuck: 0, destroyed: 0 });
    expect((await storage.agents.getRuntime(rt!.id))?.heartbeatAt).toBeGreaterThanOrEqual(rt!.readyAt! + 50_000);
  });

  test("runtimes past agents_max_runtimes are not started; a cold claim then answers 429", async () => {
    const { pool, storage } = makePool({ settings: { minIdle: 5, maxRuntimes: 2 } });
    await putTemplate(storage, "acme", "helper", TEMPLATE);
    await pool.refill();
    expect((await count(storage)).ready).toBe(2);
    await pool.claim({ tenant: "acme", template: "helper", agent: "a" }, "t");
    await pool.claim({ tenant: "acme", template: "helper", agent: "b" }, "t");
    await expect(pool.claim({ tenant: "acme", template: "helper", agent: "c" }, "t")).rejects.toMatchObject({
      kind: "rate_limited",
    });
  });
});

test("a runtime's output is kept for logs(id), the last lines, each with its stream", async () => {
  const { pool, storage } = makePool({
    settings: { minIdle: 1 },
    isolation: "process",
    command: [SILENT_RUNTIME[0], "-e", `console.log("hello from the runtime"); ${SILENT_RUNTIME[2]}`],
  });
  await putTemplate(storage, "acme", "helper", TEMPLATE);
  await pool.refill();
  const [rt] = await storage.agents.listRuntimes({ state: "ready", limit: 1 });
  await until("the runtime's output", () => pool.logs(rt!.id).length > 0);
  expect(pool.logs(rt!.id)[0]).toMatchObject({ stream: "stdout", line: "hello from the runtime" });
  expect(join(storage.dir, "agents", "rt", rt!.id)).toBe(rt!.dir);
});

test("an appliance without any template keeps no warm runtime, whatever min_idle says; once there is one, the refill fills to min_idle", async () => {
  const { pool, storage } = makePool({ settings: { minIdle: 2 } });
  await pool.refill();
  expect((await count(storage)).ready + (await count(storage)).starting).toBe(0);
  await putTemplate(storage, "acme", "helper", TEMPLATE);
  await pool.refill();
  expect((await count(storage)).ready).toBe(2);
});
