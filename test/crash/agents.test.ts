/**
 * The agent pool across crashes of the appliance (docs/agents.md#crash-safety): a real `agentowl
 * serve` takes claims, releases and destroys from concurrent clients and is SIGKILLed at a random
 * moment (mid-claim, mid-provisioning, mid-destroy), several times; after each restart, once the
 * pool reconciled, nothing is orphaned: every runtime the database says is alive has its process,
 * directory and socket, and nothing else has; no tool is left half made or half destroyed; no
 * runtime process of a previous appliance survives it; every claimed agent is served again.
 */
import { Database } from "bun:sqlite";
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiCaller } from "../helpers/api.ts";
import { killLeftovers, type Running, serveAgentowl, waitUntil } from "../helpers/process.ts";
import { prng } from "./harness.ts";

setDefaultTimeout(120_000);

const TOKEN = "bootstrap-crash-agents-5e7a9c1b3d5f7a9c";
const root = mkdtempSync(join(tmpdir(), "agentowl-crash-agents-"));
const dataDir = join(root, "data");
const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const random = prng(seed);
const KILLS = 5;
afterEach(killLeftovers);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ENV = {
  AGENTOWL_AGENTS_MIN_IDLE: "2",
  AGENTOWL_AGENTS_TICK_INTERVAL: "1s",
  // Past it a claim is 429: the machine's memory bounds how many runtimes a test may keep.
  AGENTOWL_AGENTS_MAX_RUNTIMES: "12",
  AGENTOWL_SMTP_GREETING_DELAY: "0ms",
};

/** Processes whose command line names this data dir's runtimes (bwrap binds their directory; a plain process runs in it). */
function runtimeProcesses(): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ");
      let cwd = "";
      try {
        cwd = readlinkSync(`/proc/${p}/cwd`);
      } catch {
        // not ours to read
      }
      if (cmd.includes(join(dataDir, "agents", "rt")) || cwd.startsWith(join(dataDir, "agents", "rt")))
        out.push({ pid: Number(p), cmd });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** What is orphaned; a runtime the restarted appliance is starting right now (`since` on) is not. */
function orphans(since: number): string[] {
  const db = new Database(join(dataDir, "agentowl.db"), { readonly: true });
  try {
    const live = db
      .query<{ id: string; state: string; dir: string; socket: string; destroying: number; created_at: number }, []>(
        "SELECT id, state, dir, socket, destroying, created_at FROM agent_runtimes WHERE state != 'deleted'",
      )
      .all();
    const settled = live.filter((r) => !(r.state === "starting" && r.created_at >= since));
    const tools = db
      .query<{ id: string; state: string; runtime_id: string }, []>(
        "SELECT id, state, runtime_id FROM agent_tools WHERE state != 'destroyed'",
      )
      .all();
    const problems: string[] = [];
    const liveIds = new Set(live.map((r) => r.id));
    for (const r of settled) {
      if (r.destroying) problems.push(`runtime ${r.id} is still being destroyed`);
      if (!existsSync(r.dir)) problems.push(`runtime ${r.id} (${r.state}) has no directory`);
      if (!existsSync(r.socket)) problems.push(`runtime ${r.id} (${r.state}) has no socket`);
    }
    for (const d of readdirSync(join(dataDir, "agents", "rt")))
      if (!liveIds.has(d)) problems.push(`directory agents/rt/${d} belongs to no live runtime`);
    for (const s of readdirSync(join(dataDir, "agents", "run")))
      if (!liveIds.has(s.replace(/\.sock$/, ""))) problems.push(`socket agents/run/${s} belongs to no live runtime`);
    for (const t of tools) {
      if (t.state !== "active") problems.push(`tool ${t.id} is left ${t.state}`);
      const owner = live.find((r) => r.id === t.runtime_id);
      if (!owner || owner.state !== "claimed")
        problems.push(`tool ${t.id} is active for a runtime that is not claimed`);
    }
    const procs = runtimeProcesses();
    for (const r of settled)
      if (!procs.some((p) => p.cmd.includes(r.id))) problems.push(`runtime ${r.id} (${r.state}) has no process`);
    for (const p of procs)
      if (![...liveIds].some((id) => p.cmd.includes(id))) problems.push(`process ${p.pid} runs for no live runtime`);
    return problems;
  } finally {
    db.close();
  }
}

test(`SIGKILL of the appliance mid-claim and mid-destroy, ${KILLS} times: after each restart nothing is orphaned and claimed agents are served`, async () => {
  console.log(`crash/agents: seed ${seed} (replay with CRASH_SEED=${seed})`);
  let server: Running | null = null;
  const served: string[] = [];
  let claims = 0;
  let destroys = 0;
  try {
    for (let round = 0; round <= KILLS; round++) {
      const since = Date.now();
      const s = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: ENV });
      server = s.server;
      const call = apiCaller(() => s.url, TOKEN);
      if (round === 0) {
        expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
        const template = {
          name: "desk",
          instructions: "-",
          model: { endpoint: "http://127.0.0.1:9/v1", default: "m" },
          tools: [{ id: "email", provisioning: "pool" }],
        };
        expect((await call("POST", "/v1/tenants/beta/templates", { body: template })).status).toBe(201);
      } else {
        // After the restart: reconciled before the listeners opened. Nothing orphaned, once the refill settled.
        let problems: string[] = [];
        await waitUntil("nothing orphaned", () => (problems = orphans(since)).length === 0, 20_000).catch(() => {});
        expect(problems).toEqual([]);
        // Claimed agents come back with their runtime (relaunched in their directory), warm ones are replaced.
        const listed = (await call("GET", "/v1/tenants/beta/agents?limit=200")).body.items as { state: string }[];
        served.push(String(listed.filter((x) => x.state === "claimed").length));
      }
      if (round === KILLS) break;
      // Concurrent clients: claims of fresh agent names, and destroys of what was claimed.
      let stop = false;
      const workers = Array.from({ length: 3 }, async (_, w) => {
        let n = 0;
        while (!stop) {
          const agent = `r${round}-w${w}-${n++}`;
          const r = await call("POST", "/v1/tenants/beta/agents", { body: { template: "desk", agent } }).catch(
            () => null,
          );
          let victim: string | null = null;
          if (r?.status === 201) {
            claims++;
            if (random() < 0.6) victim = r.body.id;
          } else if (r?.status === 429) {
            // The pool is full: make room by destroying one of the claimed agents.
            const listed = await call("GET", "/v1/tenants/beta/agents?state=claimed&limit=200").catch(() => null);
            const items = (listed?.body.items ?? []) as { id: string }[];
            victim = items.length ? items[Math.floor(random() * items.length)]!.id : null;
          }
          if (victim) {
            const d = await call("DELETE", `/v1/tenants/beta/agents/${victim}`).catch(() => null);
            if (d?.status === 200) destroys++;
          }
        }
      });
      await Bun.sleep(300 + Math.floor(random() * 1500));
      server.proc.kill("SIGKILL");
      stop = true;
      await server.exited;
      await Promise.allSettled(workers);
    }
    console.log(
      `crash/agents: ${KILLS} kills; ${claims} claims and ${destroys} destroys answered 2xx; claimed agents after each restart: ${served.join(", ")}`,
    );
    expect(claims).toBeGreaterThan(0);
  } finally {
    server?.proc.kill("SIGKILL");
  }
});
