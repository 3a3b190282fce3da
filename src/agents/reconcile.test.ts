import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../core/log.ts";
import { newId } from "../core/ids.ts";
import type { RuntimePatch, Storage } from "../store/index.ts";
import { alive, sandboxLauncher, recordingProvisioner } from "../../test/helpers/agents.ts";
import { tempStorages, until } from "../../test/helpers/storage.ts";
import { hashRuntimeToken, newRuntimeToken, openChannel } from "./channel.ts";
import { Pool } from "./pool.ts";
import { reconcile } from "./reconcile.ts";

const storages = tempStorages();
const pools: Pool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});

const TEMPLATE = {
  name: "helper",
  instructions: "You answer mail.",
  model: { endpoint: "http://127.0.0.1:11434/v1", default: "llama3" },
  tools: [{ id: "email", provisioning: "pool" }],
};

/** A runtime row and its directory as a SIGKILLed appliance leaves them. */
async function leftRuntime(storage: Storage & { dir: string }, patch: RuntimePatch, withDir = true) {
  const id = newId("rt");
  const dir = join(storage.dir, "agents", "rt", id);
  await storage.agents.insertRuntime({
    id,
    isolation: "process",
    tokenHash: hashRuntimeToken(newRuntimeToken()),
    dir,
    socket: join(storage.dir, "agents", "run", `${id}.sock`),
    cold: false,
    createdAt: Date.now(),
  });
  if (Object.keys(patch).length) await storage.agents.transitionRuntime(id, ["starting"], patch);
  mkdirSync(join(storage.dir, "agents", "run"), { recursive: true, mode: 0o700 });
  if (withDir) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, "notes.txt"), "work of the runtime");
  }
  return (await storage.agents.getRuntime(id))!;
}

async function leftTool(storage: Storage, runtimeId: string, state: "creating" | "active" | "destroying") {
  return storage.committer.run((tx) =>
    storage.agents.insertToolTx(tx, {
      runtimeId,
      tenant: "acme",
      tool: "email",
      plugin: "email",
      provisioning: "pool",
      state,
      resourceId: `${runtimeId}@acme.test`,
      config: {},
      secretRef: null,
    }),
  );
}

test("reconcile after a crash leaves nothing orphaned: warm, starting and half-destroyed runtimes destroyed, claimed ones relaunched with their tools", async () => {
  const storage = storages();
  await storage.resources.transact((tx) =>
    storage.resources.putTx(tx, { tenant: "acme", kind: "templates", name: "helper" }, TEMPLATE, {
      mode: "create",
      actor: "test",
    }),
  );
  const claim = { tenant: "acme", template: "helper", templateVersion: 1, claimedAt: Date.now() };

  // A warm runtime whose process (process isolation) outlived the appliance.
  const ready = await leftRuntime(storage, { state: "ready", readyAt: Date.now() });
  const leftover = Bun.spawn(["sleep", "60"], { env: { PATH: process.env.PATH, AGENTOWL_RUNTIME_ID: ready.id } });
  await storage.agents.transitionRuntime(ready.id, ["ready"], { pid: leftover.pid });
  writeFileSync(ready.socket, "");
  // One being started, one mid-destroy (its tool not yet destroyed), one stuck.
  const starting = await leftRuntime(storage, {});
  const midDestroy = await leftRuntime(storage, { ...claim, state: "claimed", agent: "gone", destroying: true });
  const midTool = await leftTool(storage, midDestroy.id, "active");
  const stuck = await leftRuntime(storage, { state: "stuck", stuckAt: Date.now() }, false);
  // A claimed one: an active tool survives, one in 'creating' is destroyed.
  const claimed = await leftRuntime(storage, { ...claim, state: "claimed", agent: "bot", pid: 2 ** 22 + 1 });
  const activeTool = await leftTool(storage, claimed.id, "active");
  const creatingTool = await leftTool(storage, claimed.id, "creating");
  // A tool left 'destroying' of a runtime that is deleted already.
  const deleted = await leftRuntime(storage, { state: "deleted", deletedAt: Date.now() }, false);
  const strayTool = await leftTool(storage, deleted.id, "destroying");
  // Made before their row committed, or after it was deleted.
  mkdirSync(join(storage.dir, "agents", "rt", "rt_orphan"), { recursive: true });
  writeFileSync(join(storage.dir, "agents", "run", "rt_orphan.sock"), "");

  const tools = recordingProvisioner(storage);
  const pool = new Pool({
    storage,
    dataDir: storage.dir,
    settings: {
      minIdle: 0,
      maxRuntimes: 8,
      onEmpty: "cold",
      retryAfterMs: 5000,
      stuckTimeoutMs: 60_000,
      helloTimeoutMs: 10_000,
      memoryBytes: 256 * 1024 * 1024,
    },
    ...sandboxLauncher(),
    openChannel,
    tools,
    log: silentLogger,
  });
  pools.push(pool);

  const report = await reconcile(pool);
  expect(report).toEqual({ destroyed: 4, relaunched: 1, failed: 0, tools: 2, orphans: 2 });

  for (const r of [ready, starting, midDestroy, stuck])
    expect(await storage.agents.getRuntime(r.id)).toMatchObject({ state: "deleted", destroying: false });
  await until("the leftover process was killed", () => leftover.exitCode !== null || leftover.signalCode !== null);
  expect(leftover.signalCode).toBe("SIGKILL");
  expect((await storage.agents.getTool(midTool.id))?.state).toBe("destroyed");
  expect((await storage.agents.getTool(strayTool.id))?.state).toBe("destroyed");

  const relaunched = (await storage.agents.getRuntime(claimed.id))!;
  expect(relaunched).toMatchObject({ state: "claimed", tenant: "acme", agent: "bot", template: "helper" });
  expect(relaunched.tokenHash).not.toBe(claimed.tokenHash);
  expect(relaunched.pid).not.toBe(claimed.pid);
  expect(alive(relaunched.pid!)).toBe(true);
  expect(relaunched.syncedAt).not.toBeNull();
  expect(pool.channel(claimed.id)).not.toBeNull();
  expect(readFileSync(join(claimed.dir, "notes.txt"), "utf8")).toBe("work of the runtime");
  expect((await storage.agents.getTool(activeTool.id))?.state).toBe("active");
  expect((await storage.agents.getTool(creatingTool.id))?.state).toBe("destroyed");
  expect((await storage.audit.list({ action: "agent.relaunch", limit: 5 })).map((e) => e.target)).toEqual([claimed.id]);

  // On disk: exactly the live runtime's directory and socket.
  expect(readdirSync(join(storage.dir, "agents", "rt"))).toEqual([claimed.id]);
  expect(readdirSync(join(storage.dir, "agents", "run"))).toEqual([`${claimed.id}.sock`]);
  expect(existsSync(ready.socket)).toBe(false);
  expect((await storage.agents.liveRuntimes()).map((r) => r.id)).toEqual([claimed.id]);
  // Nothing left half done for the next start either.
  expect(await storage.agents.unsettledTools()).toEqual([]);
});

test("a claimed runtime whose template is gone is destroyed at reconcile, not relaunched", async () => {
  const storage = storages();
  const claimed = await leftRuntime(storage, {
    state: "claimed",
    tenant: "acme",
    agent: "bot",
    template: "vanished",
    templateVersion: 1,
  });
  const pool = new Pool({
    storage,
    dataDir: storage.dir,
    settings: {
      minIdle: 0,
      maxRuntimes: 8,
      onEmpty: "cold",
      retryAfterMs: 5000,
      stuckTimeoutMs: 60_000,
      helloTimeoutMs: 10_000,
      memoryBytes: 256 * 1024 * 1024,
    },
    ...sandboxLauncher(),
    openChannel,
    tools: recordingProvisioner(storage),
    log: silentLogger,
  });
  pools.push(pool);
  expect(await reconcile(pool)).toMatchObject({ relaunched: 0, failed: 1, destroyed: 1 });
  expect((await storage.agents.getRuntime(claimed.id))?.state).toBe("deleted");
  expect((await storage.audit.list({ action: "agent.stuck", limit: 1 }))[0]?.details).toMatchObject({
    reason: expect.stringContaining("relaunch failed"),
  });
  expect(readdirSync(join(storage.dir, "agents", "rt"))).toEqual([]);
});
