/**
 * `npm run bench -- startup` (docs/performance.md): the compiled binary's start-up and memory,
 * beside a bare `Bun.serve` answering /healthz and /readyz, compiled with the same flags in the
 * same run. Start-up is exec → the first 200 from /healthz, and exec → the first 200 from /readyz,
 * each the median of BENCH_STARTUP_RUNS, interleaved with the other cases:
 *
 *   - existing data dir: what a user gets on power-on, after `agentowl init` (the target's case);
 *   - fresh data dir: creates and migrates the database and generates the TLS pair;
 *   - a data dir that BENCH_STARTUP_EVENTS (100,000) events have passed through (issue 21's
 *     "boot to serving" case: exec → /readyz 200 in under 1 s).
 *
 * Memory: the resident set 3 s after ready on the existing data dir (idle; started beside the bare
 * server, and while the busy appliance below settles: nothing is timed then), and after
 * BENCH_STARTUP_EVENTS webhooks were taken in and delivered to a local receiver, once it has
 * settled (BENCH_STARTUP_SETTLE_S, 15 s, after the last delivery: the memory of the burst goes
 * back about 10 s after it, measured here), with the value 5 s after the last delivery and the
 * process's peak beside it.
 *
 * dist/agentowl is built first (`npm run build`), unless BENCH_STARTUP_BINARY names a binary (to
 * measure an older build beside it). `AGENTOWL_LOG_LEVEL=debug agentowl serve` logs each start-up
 * step's milliseconds ("start-up step"), for finding where the time goes.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, spawnSync, type Subprocess } from "bun";

import { freePort } from "./common.ts";

const ROOT = join(import.meta.dir, "..");
const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 15);
const IDLE_RUNS = Number(process.env.BENCH_STARTUP_IDLE_RUNS ?? 3);
const EVENTS = Number(process.env.BENCH_STARTUP_EVENTS ?? 100_000);
const IN_FLIGHT = 64;
const SETTLE_S = Number(process.env.BENCH_STARTUP_SETTLE_S ?? 15);
const BUN = join(ROOT, "node_modules/.bin/bun");
const TOKEN = "bench-startup-bootstrap-token-000000000000";

const TARGETS = { healthyMs: 150, idleRssMB: 80, busyRssMB: 150, bootWithEventsMs: 1000 };

/** The shape bench/report.ts reads (a section's figures and targets). */
interface Figure {
  name: string;
  value: number;
  unit: string;
  peakRssMiB?: number;
  vs?: { role: "reference" | "floor" | "ceiling"; name: string; value: number; ratio: number }[];
}
interface Target {
  name: string;
  measured: number;
  op: "<";
  bound: number;
  unit: string;
}
export interface StartupResult {
  section: "startup";
  figures: Figure[];
  targets: Target[];
  notes: string[];
}

function build(entry: string, out: string): void {
  const r = spawnSync([BUN, "build", "--compile", "--minify", "--bytecode", "--format=esm", entry, "--outfile", out], {
    cwd: ROOT,
    stdout: "ignore",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`build of ${entry} failed: ${r.stderr.toString()}`);
}

function status(pid: number, field: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

const MiB = (bytes: number) => bytes / 1024 / 1024;
const MB = (bytes: number) => bytes / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

interface Started {
  proc: Subprocess;
  healthyMs: number;
  readyMs: number;
  url: string;
}

/** Spawn; poll /healthz until 200, then /readyz until 200 (both from the exec). */
async function start(cmd: string[], env: Record<string, string>): Promise<Started> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  const proc = spawn(cmd, {
    env: { ...process.env, ...env, PORT: String(port), AGENTOWL_HTTP_LISTEN: `127.0.0.1:${port}` },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    let healthyMs = Number.NaN;
    for (;;) {
      if (performance.now() - t0 > 20_000) throw new Error(`${cmd.join(" ")}: not ready after 20 s`);
      if (proc.exitCode !== null) throw new Error(`${cmd.join(" ")}: exited with ${proc.exitCode}`);
      const path = Number.isNaN(healthyMs) ? "/healthz" : "/readyz";
      const ok = await fetch(`${url}${path}`).then(
        async (r) => (await r.arrayBuffer(), r.status === 200),
        () => false,
      );
      if (ok && path === "/healthz") healthyMs = performance.now() - t0;
      // Asked again at once: /readyz may already pass.
      if (ok && path === "/healthz") continue;
      if (ok) return { proc, healthyMs, readyMs: performance.now() - t0, url };
      await Bun.sleep(1);
    }
  } catch (e) {
    proc.kill("SIGKILL");
    throw e;
  }
}

async function stop(proc: Subprocess): Promise<void> {
  proc.kill("SIGTERM");
  await proc.exited;
}

/** Start, stop; the two times. */
async function timeStart(cmd: string[], env: Record<string, string>): Promise<{ healthyMs: number; readyMs: number }> {
  const s = await start(cmd, env);
  await stop(s.proc);
  return { healthyMs: s.healthyMs, readyMs: s.readyMs };
}

/**
 * Start every command (at once: only their resident sets are read, not their start-up), wait
 * `settleMs` after the last is ready, read each one's resident set; stop them.
 */
async function idleRss(cmds: { cmd: string[]; env: Record<string, string> }[], settleMs = 3000): Promise<number[]> {
  const started = await Promise.allSettled(cmds.map((c) => start(c.cmd, c.env)));
  const procs = started.flatMap((s) => (s.status === "fulfilled" ? [s.value.proc] : []));
  try {
    for (const s of started) if (s.status === "rejected") throw s.reason;
    await Bun.sleep(settleMs);
    return procs.map((p) => status(p.pid, "VmRSS"));
  } finally {
    await Promise.all(procs.map(stop));
  }
}

function serveEnv(dataDir: string): Record<string, string> {
  return {
    AGENTOWL_DATA_DIR: dataDir,
    AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
    AGENTOWL_LOG_LEVEL: "warn",
    AGENTOWL_BOOTSTRAP_TOKEN: TOKEN,
  };
}

/** `agentowl init` on a new data dir (no terminal: it prints the admin's credentials, unread). */
function init(binary: string, dataDir: string): void {
  const r = spawnSync([binary, "init"], {
    env: { ...process.env, AGENTOWL_DATA_DIR: dataDir },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`agentowl init failed: ${r.stderr.toString()}`);
}

/**
 * `events` webhooks into a running appliance (IN_FLIGHT at a time), each routed to a local
 * receiver; resolves once the receiver has every delivery. Returns the seconds it took.
 */
async function passEvents(url: string, events: number): Promise<number> {
  let arrivals = 0;
  let allArrived: () => void = () => {};
  const arrived = new Promise<void>((resolve) => (allArrived = resolve));
  const rx = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      await req.arrayBuffer();
      if (++arrivals >= events) allArrived();
      return new Response("ok");
    },
  });
  try {
    const api = async (method: string, path: string, body: unknown) => {
      const r = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    };
    await api("POST", "/v1/tenants", { name: "beta" });
    await api("PUT", "/v1/tenants/beta/secrets/receiver", {
      value: `whsec_${Buffer.from("bench-startup-signing-secret-32by").toString("base64")}`,
    });
    await api("POST", "/v1/tenants/beta/endpoints", {
      name: "receiver",
      url: `http://127.0.0.1:${rx.port}/hook`,
      signing_secret: "vault:beta/receiver",
      max_in_flight: 100,
    });
    await api("POST", "/v1/tenants/beta/bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } });
    await api("POST", "/v1/tenants/beta/routes", { name: "all", default: true, to: ["receiver"] });
    const ingress = `${url}/ingress/webhook/beta/hooks`;
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < events) {
          const i = next++;
          const body = JSON.stringify({ type: "ticket.created", ticket: { id: i, title: "Printer out of toner" } });
          for (;;) {
            const r = await fetch(ingress, { method: "POST", headers: { "content-type": "application/json" }, body });
            await r.arrayBuffer();
            if (r.status === 202) break;
            // Back-pressure (429/503): the appliance says when to come back; a short wait suffices here.
            if (r.status !== 429 && r.status !== 503) throw new Error(`ingress answered ${r.status}`);
            await Bun.sleep(10);
          }
        }
      }),
    );
    const deadline = Bun.sleep(600_000).then(() => {
      throw new Error(`${arrivals} of ${events} deliveries after 10 minutes`);
    });
    await Promise.race([arrived, deadline]);
    return (performance.now() - t0) / 1000;
  } finally {
    rx.stop(true);
  }
}

export async function benchStartup(): Promise<StartupResult> {
  const work = mkdtempSync(join(tmpdir(), "agentowl-startup-"));
  const loadBefore = load();
  const notes: string[] = [];
  try {
    const ours = process.env.BENCH_STARTUP_BINARY ?? join(ROOT, "dist/agentowl");
    if (!process.env.BENCH_STARTUP_BINARY) {
      const r = spawnSync(["bash", "scripts/build.sh"], { cwd: ROOT, stdout: "ignore", stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`npm run build failed: ${r.stderr.toString()}`);
    } else if (!existsSync(ours)) throw new Error(`BENCH_STARTUP_BINARY=${ours}: no such file`);
    const bareSrc = join(work, "bare.ts");
    writeFileSync(
      bareSrc,
      `const port = Number(process.env.PORT);
Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(r) {
    const path = new URL(r.url).pathname;
    if (path === "/healthz") return Response.json({ status: "ok" });
    if (path === "/readyz") return Response.json({ status: "ready" });
    return new Response("", { status: 404 });
  },
});
process.on("SIGTERM", () => process.exit(0));`,
    );
    const bare = join(work, "bare");
    build(bareSrc, bare);

    const existing = join(work, "existing");
    init(ours, existing);
    type Times = { healthyMs: number; readyMs: number };
    const t = { existing: [] as Times[], fresh: [] as Times[], bare: [] as Times[], busy: [] as Times[] };
    for (let i = 0; i < RUNS; i++) {
      t.existing.push(await timeStart([ours, "serve"], serveEnv(existing)));
      t.fresh.push(await timeStart([ours, "serve"], serveEnv(join(work, `fresh-${i}`))));
      t.bare.push(await timeStart([bare], {}));
    }
    // The idle resident sets: the appliance and the bare server side by side, IDLE_RUNS times. No
    // start-up is timed meanwhile, so they run while the busy appliance below settles (idle too).
    const idle: number[] = [];
    const bareIdle: number[] = [];
    const idleRuns = async () => {
      for (let i = 0; i < IDLE_RUNS; i++) {
        const [ourRss, bareRss] = await idleRss([
          { cmd: [ours, "serve"], env: serveEnv(existing) },
          { cmd: [bare], env: {} },
        ]);
        idle.push(ourRss!);
        bareIdle.push(bareRss!);
      }
    };

    // EVENTS webhooks through a running appliance to a local receiver, then its resident set.
    let busy: { rss: number; at5s: number; peak: number; seconds: number } | null = null;
    const busyDir = join(work, "busy");
    if (EVENTS > 0) {
      // Not init'ed: the bootstrap token is the admin until a first admin token exists.
      const s = await start([ours, "serve"], {
        ...serveEnv(busyDir),
        AGENTOWL_INGRESS_RATE_PER_BINDING: "10000000",
      });
      try {
        const seconds = await passEvents(s.url, EVENTS);
        const settle = async () => {
          await Bun.sleep(5000);
          const at5s = status(s.proc.pid, "VmRSS");
          await Bun.sleep(Math.max(0, SETTLE_S * 1000 - 5000));
          return { rss: status(s.proc.pid, "VmRSS"), at5s, peak: status(s.proc.pid, "VmHWM"), seconds };
        };
        [busy] = await Promise.all([settle(), idleRuns()]);
      } finally {
        await stop(s.proc);
      }
      for (let i = 0; i < RUNS; i++) t.busy.push(await timeStart([ours, "serve"], serveEnv(busyDir)));
    } else await idleRuns();

    const m = (xs: Times[], k: keyof Times) => median(xs.map((x) => x[k]));
    const bareH = m(t.bare, "healthyMs");
    const bareR = m(t.bare, "readyMs");
    const idleRssB = median(idle);
    const bareRssB = median(bareIdle);
    const met = (ok: boolean) => (ok ? "met" : "NOT met");
    const ms = (x: number) => `${x.toFixed(1)} ms`.padStart(9);
    const line = (name: string, x: number, ref: number, target?: number) =>
      console.log(
        `   ${name.padEnd(50)}${ms(x)}  ${(x / ref).toFixed(1).padStart(5)}x bare` +
          (target === undefined ? "" : `  (target < ${target} ms: ${met(x < target)})`),
      );
    console.log(`start-up of the compiled binary, exec → first 200, median of ${RUNS} (load before: ${loadBefore})`);
    console.log(`   bare Bun.serve (compiled): /healthz ${bareH.toFixed(1)} ms, /readyz ${bareR.toFixed(1)} ms`);
    line("existing data dir (after init): /healthz", m(t.existing, "healthyMs"), bareH, TARGETS.healthyMs);
    line("existing data dir (after init): /readyz", m(t.existing, "readyMs"), bareR);
    line("fresh data dir (creates db, TLS pair): /healthz", m(t.fresh, "healthyMs"), bareH);
    line("fresh data dir: /readyz", m(t.fresh, "readyMs"), bareR);
    if (t.busy.length) {
      line(`after ${EVENTS.toLocaleString("en-US")} events: /healthz`, m(t.busy, "healthyMs"), bareH);
      line(
        `after ${EVENTS.toLocaleString("en-US")} events: /readyz`,
        m(t.busy, "readyMs"),
        bareR,
        TARGETS.bootWithEventsMs,
      );
    }
    console.log(`resident set (median of ${IDLE_RUNS} for idle)`);
    console.log(
      `   idle, 3 s after ready (existing data dir):    ${MiB(idleRssB).toFixed(1)} MiB = ${MB(idleRssB).toFixed(1)} MB` +
        `  ${(idleRssB / bareRssB).toFixed(2)}x bare (${MiB(bareRssB).toFixed(1)} MiB)` +
        `  (target < ${TARGETS.idleRssMB} MB: ${met(MB(idleRssB) < TARGETS.idleRssMB)})`,
    );
    if (busy)
      console.log(
        `   ${EVENTS.toLocaleString("en-US")} events delivered (${busy.seconds.toFixed(1)} s), ${SETTLE_S} s after:` +
          ` ${MiB(busy.rss).toFixed(1)} MiB = ${MB(busy.rss).toFixed(1)} MB (5 s after: ${MiB(busy.at5s).toFixed(1)} MiB;` +
          ` peak ${MiB(busy.peak).toFixed(1)} MiB)` +
          `  (target < ${TARGETS.busyRssMB} MB: ${met(MB(busy.rss) < TARGETS.busyRssMB)})`,
      );
    else notes.push("BENCH_STARTUP_EVENTS=0: the case after events was not run");
    const loadAfter = load();
    console.log(`load average before ${loadBefore}, after ${loadAfter}`);

    const bareVs = (value: number) => [{ role: "reference" as const, name: "bare Bun.serve", value, ratio: 0 }];
    const fig = (name: string, value: number, unit: string, ref?: number, extra: Partial<Figure> = {}): Figure => ({
      name,
      value,
      unit,
      ...extra,
      ...(ref === undefined ? {} : { vs: bareVs(ref).map((v) => ({ ...v, ratio: value / ref })) }),
    });
    const figures = [
      fig("start-up to /healthz, existing data dir", m(t.existing, "healthyMs"), "ms", bareH),
      fig("start-up to /readyz, existing data dir", m(t.existing, "readyMs"), "ms", bareR),
      fig("start-up to /healthz, fresh data dir", m(t.fresh, "healthyMs"), "ms", bareH),
      fig("start-up to /readyz, fresh data dir", m(t.fresh, "readyMs"), "ms", bareR),
      fig("idle RSS, existing data dir", MiB(idleRssB), "MiB", MiB(bareRssB)),
    ];
    const targets: Target[] = [
      {
        name: "start-up to /healthz, existing data dir",
        measured: m(t.existing, "healthyMs"),
        op: "<",
        bound: 150,
        unit: "ms",
      },
      { name: "idle RSS", measured: MB(idleRssB), op: "<", bound: TARGETS.idleRssMB, unit: "MB" },
    ];
    if (t.busy.length) {
      figures.push(fig(`start-up to /readyz, ${EVENTS} events`, m(t.busy, "readyMs"), "ms", bareR));
      targets.push({
        name: `start-up to /readyz, ${EVENTS} events`,
        measured: m(t.busy, "readyMs"),
        op: "<",
        bound: TARGETS.bootWithEventsMs,
        unit: "ms",
      });
    }
    if (busy) {
      figures.push(
        fig(`RSS after ${EVENTS} events delivered`, MiB(busy.rss), "MiB", MiB(bareRssB), {
          peakRssMiB: MiB(busy.peak),
        }),
      );
      targets.push({
        name: `RSS after ${EVENTS} events`,
        measured: MB(busy.rss),
        op: "<",
        bound: TARGETS.busyRssMB,
        unit: "MB",
      });
    }
    notes.push(`load average before ${loadBefore}, after ${loadAfter}`);
    return { section: "startup", figures, targets, notes };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  await benchStartup();
  process.exit(0);
}
