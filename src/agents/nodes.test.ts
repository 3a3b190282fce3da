import { afterAll, afterEach, expect, test } from "bun:test";
import { silentLogger } from "../core/log.ts";
import type { PostgresStorage } from "../store/postgres/index.ts";
import { alive, recordingProvisioner, SILENT_RUNTIME, sandboxLauncher } from "../../test/helpers/agents.ts";
import { testPostgres } from "../../test/helpers/postgres.ts";
import { openPostgresStorage } from "../store/postgres/index.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openChannel } from "./channel.ts";
import { Pool, type PoolSettings } from "./pool.ts";
import { reconcile } from "./reconcile.ts";
import { tick } from "./tick.ts";

// Several nodes on one PostgreSQL database, each with its own agent pool (docs/agents.md#several-nodes):
// two storages with their own connections and data dirs, as two processes have.
const pg = await testPostgres();
const skip = typeof pg === "string";
if (skip) console.log(`agent pools on several nodes: tests skipped: ${pg}`);
afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});

const SETTINGS: PoolSettings = {
  minIdle: 1,
  maxRuntimes: 16,
  onEmpty: "cold",
  retryAfterMs: 5000,
  stuckTimeoutMs: 60_000,
  helloTimeoutMs: 10_000,
  memoryBytes: 256 * 1024 * 1024,
};

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function nodes(names: string[]): Promise<{ storage: PostgresStorage; pool: Pool; dir: string }[]> {
  if (typeof pg === "string") throw new Error(pg);
  const url = await pg.freshDatabase();
  cleanups.push(() => pg.drop(url));
  const out: { storage: PostgresStorage; pool: Pool; dir: string }[] = [];
  for (const node of names) {
    const dir = mkdtempSync(join(tmpdir(), "agentowl-agents-node-"));
    const storage = openPostgresStorage({ dir, url });
    cleanups.push(async () => {
      await storage.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    });
    const launcher = sandboxLauncher("process");
    const pool = new Pool({
      storage,
      dataDir: dir,
      settings: SETTINGS,
      isolation: launcher.isolation,
      launch: (spec) => launcher.launch(spec.command ? spec : { ...spec, command: SILENT_RUNTIME }),
      openChannel,
      tools: recordingProvisioner(storage),
      log: silentLogger,
      node,
    });
    cleanups.push(() => pool.close());
    out.push({ storage, pool, dir });
  }
  const { storage } = out[0]!;
  await storage.resources.transact((tx) =>
    storage.resources.putTx(
      tx,
      { tenant: "acme", kind: "templates", name: "helper" },
      { name: "helper", instructions: "-", model: { endpoint: "http://127.0.0.1:9/v1", default: "m" } },
      { mode: "upsert", actor: "test" },
    ),
  );
  return out;
}

test.skipIf(skip)(
  "two nodes' pools on one database: each checks, reconciles and claims only its own runtimes; a destroy asked on the other node is finished by the runtime's own",
  async () => {
    const [a, b] = await nodes(["host-a:/data", "host-b:/data"]);
    await Promise.all([a!.pool.refill(), b!.pool.refill()]);
    const [ra] = await a!.storage.agents.listRuntimes({ state: "ready", node: "host-a:/data", limit: 10 });
    const [rb] = await b!.storage.agents.listRuntimes({ state: "ready", node: "host-b:/data", limit: 10 });
    expect(ra?.node).toBe("host-a:/data");
    expect(rb?.node).toBe("host-b:/data");

    // Node a's tick does not take node b's runtime for one whose process is gone.
    expect(await tick(a!.pool)).toEqual({ stuck: 0, destroyed: 0 });
    expect((await a!.storage.agents.getRuntime(rb!.id))?.state).toBe("ready");
    expect(alive(rb!.pid!)).toBe(true);

    // A third node starting up reconciles nothing of theirs.
    const third = new Pool({
      storage: a!.storage,
      dataDir: mkdtempSync(join(tmpdir(), "agentowl-agents-node-c-")),
      settings: { ...SETTINGS, minIdle: 0 },
      ...sandboxLauncher("process"),
      openChannel,
      tools: recordingProvisioner(a!.storage),
      log: silentLogger,
      node: "host-c:/data",
    });
    cleanups.push(() => third.close());
    expect(await reconcile(third)).toMatchObject({ destroyed: 0, relaunched: 0, failed: 0 });
    for (const r of [ra!, rb!]) expect((await a!.storage.agents.getRuntime(r.id))?.state).toBe("ready");

    // A claim on node b takes node b's runtime, although node a's is older; the next is cold, on b.
    const warm = await b!.pool.claim({ tenant: "acme", template: "helper", agent: "one" }, "test");
    expect(warm).toMatchObject({ cold: false, runtime: { id: rb!.id, node: "host-b:/data" } });
    await until(
      async () =>
        (await b!.storage.agents.listRuntimes({ state: "ready", node: "host-b:/data", limit: 1 })).length === 1,
    );
    const [refilled] = await b!.storage.agents.listRuntimes({ state: "ready", node: "host-b:/data", limit: 1 });
    const onA = await a!.pool.claim({ tenant: "acme", template: "helper", agent: "two" }, "test");
    expect(onA).toMatchObject({ cold: false, runtime: { id: ra!.id, node: "host-a:/data" } });

    // Node a is asked to destroy node b's claimed runtime: it marks it; node b's tick finishes it.
    const marked = await a!.pool.destroy("acme", rb!.id, "test");
    expect(marked).toMatchObject({ id: rb!.id, state: "claimed", destroying: true });
    expect(alive(rb!.pid!)).toBe(true);
    expect(await tick(b!.pool)).toMatchObject({ destroyed: 1 });
    expect((await b!.storage.agents.getRuntime(rb!.id))?.state).toBe("deleted");
    await until(async () => !alive(rb!.pid!));

    // A row deleted elsewhere (the store, while node b runs its process): node b's tick stops the process.
    await a!.storage.agents.transitionRuntime(refilled!.id, ["ready"], { state: "deleted", deletedAt: Date.now() });
    expect(alive(refilled!.pid!)).toBe(true);
    await tick(b!.pool);
    await until(async () => !alive(refilled!.pid!));
    expect(b!.pool.channel(refilled!.id)).toBeNull();
  },
  60_000,
);

async function until(ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await ok())) {
    if (performance.now() > deadline) throw new Error("timed out");
    await Bun.sleep(20);
  }
}
