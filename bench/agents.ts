/**
 * `npm run bench -- agents` (docs/performance.md#agents): the agent pool's three figures, each
 * beside a reference and a floor measured in the same run.
 *
 * 1. Claim latency from a warm pool, p50/p99, on a real appliance started in this process
 *    (startApp: the real sandbox, socket, store and API): the API call `POST
 *    /v1/tenants/beta/agents` from a client process of its own (bench/peers/claim-client.ts) and,
 *    separately, `pool.claim()`, claim then destroy, each claim from a pool at rest (its previous
 *    refill done, so every claim is warm; its own refill starts once it answered, on the
 *    appliance's event loop, before the next claim is timed). Beside a cold claim (the pool emptied, `agents_on_empty:
 *    cold`: a runtime started for the claim) and the floor: the least a claim can cost on this
 *    stack, one durable group commit (one row written, so one fsync) and one request/answer over a
 *    runtime's Unix socket (`configure`). An empty committer unit writes no page, so no fsync: it
 *    is printed too, not used as the floor.
 * 2. Idle runtimes per GiB: N reference runtimes started through launchRuntime (the pool's
 *    launcher) and each answered hello on its socket, then left idle; the PSS of every process of
 *    each (bwrap's two and the runtime's, from /proc/PID/smaps_rollup) summed. Under bwrap and as
 *    plain processes, from source (Bun + src/) and as the compiled binary (`dist/agentowl runtime`,
 *    built when missing).
 * 3. A tool call's round trip through policy and audit, p99, timed by the runtime itself: a small
 *    Python runtime (a template's own `command`, /usr/bin/python3: Bun from a path under /work is
 *    hidden in the sandbox, whose /work is the runtime's directory) calls an `http` tool (policy:
 *    allow) that POSTs to a receiver on 127.0.0.1. Under bwrap it has no network, so its
 *    reference comes from the same program run as a plain process (`process` isolation), which
 *    alternates each tool call with a direct POST of the same signed body to the same receiver
 *    (a new connection each, as the tool makes). The floor, from this process: one durable group
 *    commit, then the POST (dispatch's postJson, which the tool uses).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "bun";
import { hashRuntimeToken, newRuntimeToken, openChannel } from "../src/agents/channel.ts";
import { detectIsolation, launchRuntime } from "../src/agents/sandbox/index.ts";
import type { Isolation, LaunchedRuntime, RuntimeChannel } from "../src/agents/types.ts";
import { type App, startApp } from "../src/app/app.ts";
import { silentLogger } from "../src/core/log.ts";
import { postJson, signStandardWebhook } from "../src/dispatch/post.ts";
import type { SqliteStorage } from "../src/store/index.ts";
import { loopbackConfig } from "../test/helpers/app.ts";
import { quantile } from "./common.ts";

const ROOT = join(import.meta.dir, "..");
const CLAIMS = Number(process.env.BENCH_AGENTS_CLAIMS ?? 200);
const COLD = Number(process.env.BENCH_AGENTS_COLD ?? 20);
const IDLE = Number(process.env.BENCH_AGENTS_IDLE ?? 20);
const CALLS = Number(process.env.BENCH_AGENTS_CALLS ?? 500);
const FIRST = Number(process.env.BENCH_AGENTS_FIRST ?? 50);
const WARMUP = 10;
const MIN_IDLE = 4;
const BOOTSTRAP = "bench-agents-bootstrap-token-000000000000";
const SECRET = `whsec_${Buffer.from("bench-agents-rx-signing-secret-32").toString("base64")}`;
const MIB = 1024 * 1024;
const LIMITS = { memoryBytes: 256 * MIB, cpu: 1, openFiles: 256, processes: 64 };

const fmt = (ms: number) => ms.toFixed(2);
const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
const p = (xs: readonly number[], q: number) => quantile(sorted(xs), q);
const met = (ok: boolean) => (ok ? "met" : "NOT met");
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await ok())) {
    if (performance.now() > deadline) throw new Error(`bench: ${what} did not happen within ${ms} ms`);
    await Bun.sleep(2);
  }
}

/** A bare server on 127.0.0.1 that reads each body and answers `{"ok":true}`. */
const okServer = () =>
  Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      await req.arrayBuffer();
      return Response.json({ ok: true });
    },
  });

/** The least durable write: one row in a table of its own, through the app's group committer (so one fsync). */
function durableCommit(app: App): () => Promise<void> {
  const sqlite = (app.storage as unknown as SqliteStorage).handle.sqlite;
  sqlite.run("CREATE TABLE IF NOT EXISTS bench_floor (id integer PRIMARY KEY, at integer NOT NULL)");
  const insert = sqlite.prepare("INSERT INTO bench_floor (at) VALUES (?)");
  return () => app.storage.committer.run((tx) => void insert.run(tx.now));
}

// 1. Claim latency

/** The API's claims come from a client process of their own (bench/peers/claim-client.ts), as a real client's do. */
async function claimClient() {
  type Answer = { ms: number; status: number; text: string } | { error: string } | { ready: true };
  let waiting: ((a: Answer) => void) | null = null;
  let ready!: () => void;
  const started = new Promise<void>((r) => {
    ready = r;
  });
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "peers", "claim-client.ts")], {
    stdio: ["ignore", "inherit", "inherit"],
    serialization: "json",
    ipc(m: Answer) {
      if ("ready" in m) ready();
      else waiting?.(m);
    },
  });
  await started;
  const post = async (url: string, path: string, token: string, body: unknown) => {
    const answer = await new Promise<Answer>((resolve) => {
      waiting = resolve;
      proc.send({ url, path, token, body: JSON.stringify(body) });
    });
    waiting = null;
    if ("error" in answer) throw new Error(`bench: ${answer.error}`);
    if ("ready" in answer) throw new Error("bench: the claim client started twice");
    return answer;
  };
  return {
    async claim(req: { url: string; token: string; template: string; agent: string }) {
      const r = await post(req.url, "/v1/tenants/beta/agents", req.token, { template: req.template, agent: req.agent });
      if (r.status >= 300) throw new Error(`bench: POST claim: ${r.status} ${r.text}`);
      const { id, cold } = JSON.parse(r.text) as { id: string; cold: boolean };
      return { ms: r.ms, id, cold };
    },
    /** The same client's POST to another server: the reference's round trip. */
    post: (url: string, body: unknown) => post(url, "/", "-", body),
    close: () => proc.kill(),
  };
}

/** The `configure` a claim of the template "bare" sends. */
const configureOf = (agent: string) => ({
  tenant: "beta",
  agent,
  template: {
    name: "bare",
    version: 1,
    instructions: "You answer mail.",
    model: { default: "m", allow_override: false },
    tools: [],
  },
  user_config: {},
});

async function benchClaims(app: App): Promise<Pick<SectionResult, "figures" | "targets">> {
  const pool = app.agents;
  const atRest = () =>
    until(`the pool back at min_idle ${MIN_IDLE}`, async () => {
      const s = (await pool.status()).byState;
      return s.ready >= MIN_IDLE && s.starting === 0;
    });
  let seq = 0;
  type Via = "api" | "pool";
  const client = await claimClient();
  const claimOnce = async (via: Via, template: string): Promise<{ ms: number; cold: boolean; id: string }> => {
    const agent = `a${seq++}`;
    if (via === "api") return client.claim({ url: app.url, token: BOOTSTRAP, template, agent });
    const t0 = performance.now();
    const r = await pool.claim({ tenant: "beta", template, agent }, "bench");
    return { ms: performance.now() - t0, cold: r.cold, id: r.runtime.id };
  };
  const kinds: { label: string; via: Via; template: string }[] = [
    { label: "API POST /v1/tenants/beta/agents", via: "api", template: "bare" },
    { label: "pool.claim()", via: "pool", template: "bare" },
    { label: "API, a template with email + http tools", via: "api", template: "desk" },
  ];
  const warm = kinds.map(() => [] as number[]);
  let colds = 0;
  // How long the client process sat idle before each API claim (it is idle while the pool refills).
  const gaps: number[] = [];
  let clientIdleSince = performance.now();
  const t0 = performance.now();
  for (let i = 0; i < CLAIMS + WARMUP; i++) {
    for (const [k, kind] of kinds.entries()) {
      await atRest();
      if (kind.via === "api" && i >= WARMUP) gaps.push(performance.now() - clientIdleSince);
      const c = await claimOnce(kind.via, kind.template);
      if (kind.via === "api") clientIdleSince = performance.now();
      if (c.cold) colds++;
      if (i >= WARMUP) warm[k]!.push(c.ms);
      await pool.destroy("beta", c.id, "bench");
    }
  }
  const warmSeconds = (performance.now() - t0) / 1000;

  // The reference: the same client's POST to a bare Bun.serve after the same idle gap (its median).
  const gap = p(gaps, 0.5);
  const bare = okServer();
  const bareRtt: number[] = [];
  for (let i = 0; i < CLAIMS + WARMUP; i++) {
    await Bun.sleep(gap);
    const r = await client.post(`http://127.0.0.1:${bare.port}`, { template: "bare", agent: "x" });
    if (i >= WARMUP) bareRtt.push(r.ms);
  }
  bare.stop(true);

  // What a claim waits for in the runtime: its first request after hello, on a ready runtime.
  const firstConfigure: number[] = [];
  for (let i = 0; i < FIRST; i++) {
    await atRest();
    const [ready] = await pool.list({ state: "ready", limit: 1 });
    const a = performance.now();
    await pool.channel(ready!.id)!.request("configure", configureOf("first"), 10_000);
    firstConfigure.push(performance.now() - a);
    await pool.destroy(null, ready!.id, "bench");
  }

  // Cold: the pool emptied and kept empty, each claim starts its runtime.
  await atRest();
  await pool.setMinIdle(0, "bench");
  for (const r of await pool.list({ state: "ready", limit: 1000 })) await pool.destroy(null, r.id, "bench");
  const cold: Record<Via, number[]> = { api: [], pool: [] };
  let notCold = 0;
  for (let i = 0; i < COLD; i++) {
    for (const via of ["api", "pool"] as const) {
      const c = await claimOnce(via, "bare");
      if (!c.cold) notCold++;
      cold[via].push(c.ms);
      await pool.destroy("beta", c.id, "bench");
    }
  }
  await pool.setMinIdle(MIN_IDLE, "bench");
  await atRest();

  // The floor: a durable group commit, then configure over a claimed runtime's socket.
  const floor = { commit: [] as number[], empty: [] as number[], rtt: [] as number[], both: [] as number[] };
  const held = await claimOnce("pool", "bare");
  const channel = pool.channel(held.id)!;
  const configure = configureOf("floor");
  const commit = durableCommit(app);
  for (let i = 0; i < CLAIMS + WARMUP; i++) {
    const a = performance.now();
    await app.storage.committer.run(() => {});
    const b = performance.now();
    await commit();
    const c = performance.now();
    await channel.request("configure", configure, 10_000);
    const d = performance.now();
    if (i < WARMUP) continue;
    floor.empty.push(b - a);
    floor.commit.push(c - b);
    floor.rtt.push(d - c);
    floor.both.push(d - b);
  }
  await pool.destroy("beta", held.id, "bench");
  client.close();

  const coldP50 = p(cold.api, 0.5);
  const floorP50 = p(floor.both, 0.5);
  const floorP99 = p(floor.both, 0.99);
  console.log(
    `claim latency, ${CLAIMS} claims of each kind after ${WARMUP} warm-ups (claim, destroy, pool back to ` +
      `min_idle ${MIN_IDLE}, next; ${warmSeconds.toFixed(0)} s), isolation ${pool.isolation.isolation}; ` +
      `cold claims among them: ${colds}`,
  );
  for (const [k, kind] of kinds.entries()) {
    const xs = warm[k]!;
    console.log(
      `   warm, ${kind.label.padEnd(40)} p50 ${fmt(p(xs, 0.5)).padStart(7)} ms  p99 ${fmt(p(xs, 0.99)).padStart(7)} ms` +
        `  = ${(p(xs, 0.5) / floorP50).toFixed(2)}x / ${(p(xs, 0.99) / floorP99).toFixed(2)}x the floor`,
    );
  }
  console.log(
    `   cold (pool empty, agents_on_empty=cold; ${COLD} each${notCold ? `, ${notCold} NOT cold` : ""}): ` +
      `API p50 ${fmt(coldP50)} ms  max ${fmt(sorted(cold.api).at(-1)!)} ms; ` +
      `pool.claim() p50 ${fmt(p(cold.pool, 0.5))} ms  max ${fmt(sorted(cold.pool).at(-1)!)} ms`,
  );
  console.log(
    `   floor (durable group commit + configure over the socket): p50 ${fmt(floorP50)} ms  p99 ${fmt(floorP99)} ms ` +
      `(commit p50 ${fmt(p(floor.commit, 0.5))} / p99 ${fmt(p(floor.commit, 0.99))} ms; round trip p50 ` +
      `${fmt(p(floor.rtt, 0.5))} / p99 ${fmt(p(floor.rtt, 0.99))} ms; an empty committer unit, no fsync: ` +
      `p50 ${fmt(p(floor.empty, 0.5))} ms)`,
  );
  console.log(
    `   reference: the same client's POST to a bare Bun.serve after the same idle gap (${gap.toFixed(0)} ms, the ` +
      `median before a warm API claim): p50 ${fmt(p(bareRtt, 0.5))} ms  p99 ${fmt(p(bareRtt, 0.99))} ms`,
  );
  console.log(
    `   a ready runtime's first request after hello (configure, as a claim sends it; ${FIRST}): ` +
      `p50 ${fmt(p(firstConfigure, 0.5))} ms  p99 ${fmt(p(firstConfigure, 0.99))} ms`,
  );
  const apiP99 = p(warm[0]!, 0.99);
  const poolP99 = p(warm[1]!, 0.99);
  console.log(
    `   target warm p99 < 50 ms: API ${fmt(apiP99)} ms ${met(apiP99 < 50)}, pool.claim() ${fmt(poolP99)} ms ${met(poolP99 < 50)}`,
  );
  const coldPoolP50 = p(cold.pool, 0.5);
  console.log(
    `   target >= 10x faster than cold: cold p50 / warm p99 = ${(coldP50 / apiP99).toFixed(1)}x (API) ` +
      `${met(coldP50 / apiP99 >= 10)}, ${(coldPoolP50 / poolP99).toFixed(1)}x (pool.claim()); ` +
      `cold p50 / warm p50 = ${(coldP50 / p(warm[0]!, 0.5)).toFixed(1)}x (API), ` +
      `${(coldPoolP50 / p(warm[1]!, 0.5)).toFixed(1)}x (pool.claim())`,
  );
  const floorRef = [{ role: "floor" as const, name: "durable commit + configure, p99", value: floorP99 }];
  const bareRef = {
    role: "reference" as const,
    name: "the client's POST to a bare Bun.serve, p99",
    value: p(bareRtt, 0.99),
  };
  return {
    figures: [
      figure(
        "the same client's POST to a bare Bun.serve after the same idle gap (reference)",
        p(bareRtt, 0.99),
        "ms p99",
        {
          p50: p(bareRtt, 0.5),
          p99: p(bareRtt, 0.99),
        },
      ),
      ...kinds.map((kind, k) =>
        figure(`warm claim, ${kind.label.trim()}`, p(warm[k]!, 0.99), "ms p99", {
          p50: p(warm[k]!, 0.5),
          p99: p(warm[k]!, 0.99),
          vs: kind.via === "api" ? [...floorRef, bareRef] : floorRef,
        }),
      ),
      figure("cold claim through the API (pool empty)", coldP50, "ms p50", { p50: coldP50 }),
      figure(
        "cold p50 / warm p50 through the API (the target reads cold p50 / warm p99)",
        coldP50 / p(warm[0]!, 0.5),
        "x",
      ),
      figure("floor: durable group commit + configure over the socket", floorP99, "ms p99", {
        p50: floorP50,
        p99: floorP99,
      }),
    ],
    targets: [
      { name: "warm claim p99, API", measured: apiP99, op: "<", bound: 50, unit: " ms" },
      { name: "warm claim p99, pool.claim()", measured: poolP99, op: "<", bound: 50, unit: " ms" },
      { name: "cold p50 / warm p99 (API)", measured: coldP50 / apiP99, op: ">=", bound: 10, unit: "x" },
    ],
  };
}

// 2. Idle runtimes per GiB

interface Mem {
  pss: number;
  uss: number;
  rss: number;
}

function smaps(pid: number): Mem | null {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
    return {
      pss: kib("Pss") * 1024,
      uss: (kib("Private_Clean") + kib("Private_Dirty")) * 1024,
      rss: kib("Rss") * 1024,
    };
  } catch {
    return null;
  }
}

/** `pid` and every process under it, with their command names. */
function processTree(pid: number): { pid: number; comm: string }[] {
  const children = new Map<number, number[]>();
  const comm = new Map<number, string>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      comm.set(Number(name), stat.slice(stat.indexOf("(") + 1, close));
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // Gone meanwhile.
    }
  }
  const out: { pid: number; comm: string }[] = [];
  const walk = (p: number) => {
    out.push({ pid: p, comm: comm.get(p) ?? "?" });
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

interface Variant {
  label: string;
  isolation: Isolation;
  command?: string[];
  readOnlyPaths?: string[];
}

/** N runtimes of one variant started, each answered hello, left idle 3 s; their processes' memory summed. */
async function idleRuntimes(v: Variant) {
  const root = mkdtempSync(join(tmpdir(), "agentowl-bench-mem-"));
  const started: { proc: LaunchedRuntime; channel: RuntimeChannel }[] = [];
  try {
    const t0 = performance.now();
    for (let i = 0; i < IDLE; i++) {
      const id = `rt_bench${String(i).padStart(3, "0")}`;
      const dir = join(root, "rt", id);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const socket = join(root, "run", `${id}.sock`);
      const token = newRuntimeToken();
      const channel = await openChannel({
        runtimeId: id,
        socketPath: socket,
        tokenHash: hashRuntimeToken(token),
        helloTimeoutMs: 60_000,
        onRefused: (why) => console.error(`bench: ${id} refused: ${why}`),
      });
      const proc = launchRuntime(
        {
          id,
          dir,
          socket,
          token,
          command: v.command,
          readOnlyPaths: v.readOnlyPaths,
          dataDir: root,
          limits: LIMITS,
          onOutput: () => {},
          onExit: () => {},
        },
        { isolation: v.isolation },
      );
      started.push({ proc, channel });
    }
    await Promise.all(started.map((s) => s.channel.authenticated));
    const readyMs = performance.now() - t0;
    await Bun.sleep(3000);
    const total: Mem = { pss: 0, uss: 0, rss: 0 };
    let sandboxPss = 0;
    let processes = 0;
    let unreadable = 0;
    for (const s of started) {
      for (const { pid, comm } of processTree(s.proc.pid)) {
        const m = smaps(pid);
        if (!m) {
          unreadable++;
          continue;
        }
        processes++;
        total.pss += m.pss;
        total.uss += m.uss;
        total.rss += m.rss;
        if (comm === "bwrap") sandboxPss += m.pss;
      }
    }
    return { ...total, sandboxPss, processes, unreadable, readyMs };
  } finally {
    await Promise.all(started.map((s) => s.proc.kill()));
    await Promise.all(started.map((s) => s.channel.close()));
    rmSync(root, { recursive: true, force: true });
  }
}

async function benchMemory(): Promise<void> {
  const detected = detectIsolation();
  const binary = join(ROOT, "dist/agentowl");
  if (!existsSync(binary)) {
    const r = spawnSync(["bash", "scripts/build.sh"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    if (r.exitCode !== 0) throw new Error("bench: npm run build failed");
  }
  // Outside /work, which the sandbox's own /work hides (the pool binds the binary at /opt/agentowl).
  const binDir = mkdtempSync(join(tmpdir(), "agentowl-bench-bin-"));
  const copy = join(binDir, "agentowl");
  copyFileSync(binary, copy);
  const compiled = { command: [copy, "runtime"], readOnlyPaths: [copy] };
  const variants: Variant[] = [];
  if (detected.isolation === "bwrap")
    variants.push(
      { label: "bwrap, from source (bun src/main.ts runtime)", isolation: "bwrap" },
      { label: "bwrap, compiled (agentowl runtime)", isolation: "bwrap", ...compiled },
    );
  variants.push(
    { label: "process, from source", isolation: "process" },
    { label: "process, compiled", isolation: "process", ...compiled },
  );
  console.log(
    `idle reference runtimes, ${IDLE} at once, each answered hello, idle 3 s; PSS of all their processes ` +
      `(/proc/PID/smaps_rollup); limits by rlimit/cgroup as the pool sets them; detected isolation ${detected.isolation}` +
      (detected.reason ? ` (${detected.reason})` : ""),
  );
  try {
    for (const v of variants) {
      const m = await idleRuntimes(v);
      const per = m.pss / IDLE;
      const perGiB = (1024 * MIB) / per;
      console.log(
        `   ${v.label.padEnd(46)} ${(per / MIB).toFixed(1).padStart(5)} MiB PSS each` +
          (m.sandboxPss ? ` (bwrap's ${(m.sandboxPss / IDLE / MIB).toFixed(2)})` : "") +
          `, USS ${(m.uss / IDLE / MIB).toFixed(1)}, RSS ${(m.rss / IDLE / MIB).toFixed(1)} MiB; ` +
          `${perGiB.toFixed(1)} runtimes per GiB (target >= 20: ${met(perGiB >= 20)}; by RSS, nothing shared: ` +
          `${((1024 * MIB * IDLE) / m.rss).toFixed(1)}); ` +
          `${m.processes} processes` +
          (m.unreadable ? `, ${m.unreadable} unreadable` : "") +
          `; all ${IDLE} ready in ${(m.readyMs / 1000).toFixed(2)} s`,
      );
    }
  } finally {
    rmSync(binDir, { recursive: true, force: true });
  }
}

// 3. Tool calls

/** The runtime that times its own tool calls (and, unsandboxed, direct POSTs between them); results in its directory. */
const TOOL_RUNTIME = `
import base64, hashlib, hmac, http.client, json, os, socket, sys, time
mode, n, host, port, path, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
key = base64.b64decode(secret[6:])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["AGENTOWL_RUNTIME_SOCKET"])
f = s.makefile("r", encoding="utf-8")
def send(m): s.sendall((json.dumps(m) + "\\n").encode())
def answer(rid):
    for line in f:
        m = json.loads(line)
        if m.get("type") == "result" and m.get("id") == rid: return m
        if m.get("type") == "shutdown": sys.exit(0)
def tool(i):
    send({"id": i, "type": "tool.call", "tool": "http.rx", "args": {"body": {"lead": "Ada", "n": i}}})
    m = answer(i)
    if not (m["ok"] and m["result"]["status"] == "done"): raise SystemExit("tool call failed: " + json.dumps(m))
def direct(i):
    body, mid, ts = json.dumps({"lead": "Ada", "n": i}), "msg_direct_%d" % i, str(int(time.time()))
    sig = base64.b64encode(hmac.new(key, ("%s.%s.%s" % (mid, ts, body)).encode(), hashlib.sha256).digest()).decode()
    c = http.client.HTTPConnection(host, port)
    c.request("POST", path, body, {"content-type": "application/json", "webhook-id": mid, "webhook-timestamp": ts, "webhook-signature": "v1," + sig})
    r = c.getresponse(); r.read(); c.close()
    if r.status != 200: raise SystemExit("direct POST answered %d" % r.status)
for line in f:
    m = json.loads(line)
    if m["type"] == "hello":
        send({"id": m["id"], "type": "result", "ok": True, "result": {"token": os.environ["AGENTOWL_RUNTIME_TOKEN"]}})
    elif m["type"] == "configure":
        send({"id": m["id"], "type": "result", "ok": True, "result": {}})
        out = {"tool": [], "direct": []}
        for i in range(n):
            t = time.perf_counter(); tool(100000 + i); out["tool"].append((time.perf_counter() - t) * 1000)
            if mode == "unsandboxed":
                t = time.perf_counter(); direct(i); out["direct"].append((time.perf_counter() - t) * 1000)
        with open("bench-results.json", "w") as r: json.dump(out, r)
        print("bench done", flush=True)
    elif m["type"] == "shutdown":
        break
`;
import { figure, type SectionResult } from "./report.ts";

async function benchToolCalls(app: App, rx: { url: string; port: number }): Promise<void> {
  const pool = app.agents;
  const run = async (mode: "sandboxed" | "unsandboxed") => {
    const c = await pool.claim({ tenant: "beta", template: `probe-${mode}`, agent: `probe-${mode}` }, "bench");
    const id = c.runtime.id;
    try {
      const file = join(c.runtime.dir, "bench-results.json");
      await until(
        `the ${mode} runtime's results`,
        () => {
          const failed = pool.logs(id).find((l) => l.stream === "stderr" && /Error|SystemExit|failed/.test(l.line));
          if (failed)
            throw new Error(
              `bench: the probe runtime failed: ${pool
                .logs(id)
                .map((l) => l.line)
                .join("\n")}`,
            );
          return existsSync(file) && pool.logs(id).some((l) => l.line === "bench done");
        },
        300_000,
      );
      const out = JSON.parse(readFileSync(file, "utf8")) as { tool: number[]; direct: number[] };
      return { tool: out.tool.slice(WARMUP), direct: out.direct.slice(WARMUP), isolation: c.runtime.isolation };
    } finally {
      await pool.destroy("beta", id, "bench");
    }
  };
  const sandboxed = detectIsolation().isolation === "bwrap" ? await run("sandboxed") : null;
  const plain = await run("unsandboxed");

  // The floor, from this process: a durable group commit, then the tool's POST.
  const commit = durableCommit(app);
  const floor: number[] = [];
  const bunDirect: number[] = [];
  for (let i = 0; i < CALLS + WARMUP; i++) {
    const body = JSON.stringify({ lead: "Ada", n: i });
    const headers = () => signStandardWebhook(SECRET, `msg_floor_${i}`, Math.floor(Date.now() / 1000), body);
    const opts = { allowPublic: false, connectTimeoutMs: 5000, timeoutMs: 30_000 };
    const a = performance.now();
    await commit();
    const r = await postJson(rx.url, body, headers(), opts);
    const b = performance.now();
    const r2 = await postJson(rx.url, body, headers(), opts);
    const c = performance.now();
    if (!r.ok || !r2.ok) throw new Error(`bench: the receiver answered ${r.status ?? r.error}`);
    if (i < WARMUP) continue;
    floor.push(b - a);
    bunDirect.push(c - b);
  }

  const line = (label: string, xs: number[], ref?: number[]) =>
    console.log(
      `   ${label.padEnd(62)} p50 ${fmt(p(xs, 0.5)).padStart(6)} ms  p99 ${fmt(p(xs, 0.99)).padStart(6)} ms` +
        (ref ? `  = ${(p(xs, 0.5) / p(ref, 0.5)).toFixed(1)}x / ${(p(xs, 0.99) / p(ref, 0.99)).toFixed(1)}x` : ""),
    );
  console.log(
    `tool call round trip (http tool, policy allow, audit first, signing secret leased per call), ${CALLS} calls ` +
      `after ${WARMUP} warm-ups, one at a time, timed in a Python runtime; ratios p50 / p99 to the direct POST`,
  );
  if (sandboxed) line("tool.call from the runtime under bwrap", sandboxed.tool, plain.direct);
  line("tool.call from the runtime as a plain process", plain.tool, plain.direct);
  line("direct POST from that process (reference; a new connection each)", plain.direct);
  line("floor: durable group commit + the tool's POST (from the appliance)", floor, plain.direct);
  line("the tool's POST alone, from the appliance's process", bunDirect, plain.direct);
  const ours = sandboxed?.tool ?? plain.tool;
  console.log(
    `   tool.call p99 ${fmt(p(ours, 0.99))} ms = ${(p(ours, 0.99) / p(floor, 0.99)).toFixed(1)}x the floor's p99, ` +
      `+${fmt(p(ours, 0.99) - p(plain.direct, 0.99))} ms over the direct POST's`,
  );
}

export async function benchAgents(): Promise<SectionResult> {
  let claims: Pick<SectionResult, "figures" | "targets"> = { figures: [], targets: [] };
  const root = mkdtempSync(join(tmpdir(), "agentowl-bench-agents-"));
  console.log(`load average before: ${load()}`);
  const rx = okServer();
  const rxPort = rx.port ?? 0;
  const rxUrl = `http://127.0.0.1:${rxPort}/leads`;
  const detected = detectIsolation().isolation;
  const config = loopbackConfig(root, BOOTSTRAP, {
    AGENTOWL_AGENTS_MIN_IDLE: String(MIN_IDLE),
    AGENTOWL_LOG_LEVEL: "warn",
  });
  // The pool's own launcher, but the unsandboxed probe (its reference POSTs need a network) as a plain process.
  const app = await startApp({
    config,
    log: silentLogger,
    agents: {
      launch: (spec) => launchRuntime(spec, { isolation: spec.command?.[3] === "unsandboxed" ? "process" : detected }),
    },
  });
  try {
    const api = async (method: string, path: string, body: unknown) => {
      const r = await fetch(`${app.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${BOOTSTRAP}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    };
    const model = { endpoint: "http://127.0.0.1:9/v1", default: "m" };
    await api("POST", "/v1/tenants", { name: "beta" });
    await api("PUT", "/v1/tenants/beta/secrets/rx", { value: SECRET });
    await api("POST", "/v1/tenants/beta/endpoints", { name: "rx", url: rxUrl, signing_secret: "vault:beta/rx" });
    await api("POST", "/v1/tenants/beta/templates", { name: "bare", instructions: "You answer mail.", model });
    const rxTool = { id: "http.rx", provisioning: "pool", config: { endpoint: "rx" } };
    await api("POST", "/v1/tenants/beta/templates", {
      name: "desk",
      instructions: "You answer mail and log leads.",
      model,
      tools: [{ id: "email", provisioning: "pool" }, rxTool],
    });
    for (const mode of ["sandboxed", "unsandboxed"])
      await api("POST", "/v1/tenants/beta/templates", {
        name: `probe-${mode}`,
        instructions: "-",
        model,
        tools: [rxTool],
        command: [
          "/usr/bin/python3",
          "-c",
          TOOL_RUNTIME,
          mode,
          String(CALLS + WARMUP),
          "127.0.0.1",
          String(rxPort),
          "/leads",
          SECRET,
        ],
      });
    await api("POST", "/v1/tenants/beta/policies", {
      name: "tools",
      rules: [{ name: "log-leads", when: { tool: "http.rx" }, effect: "allow" }],
    });

    claims = await benchClaims(app);
    await benchToolCalls(app, { url: rxUrl, port: rxPort });
  } finally {
    await app.stop();
    rx.stop(true);
    rmSync(root, { recursive: true, force: true });
  }
  await benchMemory();
  console.log(`load average after: ${load()}`);
  return {
    section: "agents",
    ...claims,
    notes: ["idle runtimes per GiB and a tool call's round trip are in the section's printed lines, not in the table"],
  };
}

if (import.meta.main) await benchAgents();
