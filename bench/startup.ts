/**
 * `npm run bench -- startup`: the compiled binary's start-up (spawn → first 200 from /healthz,
 * on a fresh data dir, so it includes creating and migrating the database) and its idle RSS,
 * beside a bare `Bun.serve` answering /healthz, compiled with the same flags in the same run.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, spawnSync } from "bun";

import { freePort } from "./common.ts";
import { figure, type SectionResult } from "./report.ts";

const ROOT = join(import.meta.dir, "..");
const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 15);
const BUN = join(ROOT, "node_modules/.bin/bun");

function build(entry: string, out: string): void {
  const r = spawnSync([BUN, "build", "--compile", "--minify", "--bytecode", "--format=esm", entry, "--outfile", out], {
    cwd: ROOT,
    stdout: "ignore",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`build of ${entry} failed: ${r.stderr.toString()}`);
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

/** Spawn, poll /healthz until 200; returns ms to healthy and the idle RSS after it settles. */
async function measure(cmd: string[], env: Record<string, string>, port: number, settleMs: number) {
  const t0 = performance.now();
  const proc = spawn(cmd, { env: { ...process.env, ...env }, stdout: "ignore", stderr: "ignore" });
  let ms = Number.NaN;
  try {
    for (;;) {
      if (performance.now() - t0 > 10_000) throw new Error(`${cmd[0]} not healthy after 10 s`);
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) {
        ms = performance.now() - t0;
        break;
      }
      await Bun.sleep(1);
    }
    let rss = Number.NaN;
    if (settleMs > 0) {
      await Bun.sleep(settleMs);
      rss = rssKiB(proc.pid);
    }
    return { ms, rss };
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchStartup(): Promise<SectionResult> {
  const work = mkdtempSync(join(tmpdir(), "agentowl-startup-"));
  try {
    const ours = join(ROOT, "dist/agentowl");
    if (!existsSync(ours)) spawnSync(["bash", "scripts/build.sh"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    const bareSrc = join(work, "bare.ts");
    writeFileSync(
      bareSrc,
      `const port = Number(process.env.PORT);
Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch: (r) => new URL(r.url).pathname === "/healthz" ? Response.json({ status: "ok" }) : new Response("", { status: 404 }),
});
process.on("SIGTERM", () => process.exit(0));`,
    );
    const bare = join(work, "bare");
    build(bareSrc, bare);

    const oursT: number[] = [];
    const bareT: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const port = await freePort();
      const dataDir = join(work, `data-${i}`);
      oursT.push(
        (
          await measure(
            [ours, "serve"],
            {
              AGENTOWL_DATA_DIR: dataDir,
              AGENTOWL_HTTP_LISTEN: `127.0.0.1:${port}`,
              AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
              AGENTOWL_LOG_LEVEL: "warn",
            },
            port,
            0,
          )
        ).ms,
      );
      const p2 = await freePort();
      bareT.push((await measure([bare], { PORT: String(p2) }, p2, 0)).ms);
    }
    const p1 = await freePort();
    const oursIdle = await measure(
      [ours, "serve"],
      {
        AGENTOWL_DATA_DIR: join(work, "idle"),
        AGENTOWL_HTTP_LISTEN: `127.0.0.1:${p1}`,
        AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
        AGENTOWL_LOG_LEVEL: "warn",
      },
      p1,
      3000,
    );
    const p2 = await freePort();
    const bareIdle = await measure([bare], { PORT: String(p2) }, p2, 3000);

    const mo = median(oursT);
    const mb = median(bareT);
    console.log(
      `start-up to a healthy /healthz, median of ${RUNS} (fresh data dir: creates and migrates the database)`,
    );
    console.log(`   agentowl serve (compiled): ${mo.toFixed(1)} ms (target < 150 ms)`);
    console.log(`   bare Bun.serve (compiled): ${mb.toFixed(1)} ms`);
    console.log(`   ratio: ${(mo / mb).toFixed(2)}x the bare server`);
    console.log("idle RSS, 3 s after healthy");
    console.log(`   agentowl serve: ${(oursIdle.rss / 1024).toFixed(1)} MiB (target < 80 MB)`);
    console.log(`   bare Bun.serve: ${(bareIdle.rss / 1024).toFixed(1)} MiB`);
    console.log(`   ratio: ${(oursIdle.rss / bareIdle.rss).toFixed(2)}x the bare server`);
    const bareRef = (value: number) => [{ role: "reference" as const, name: "bare compiled Bun.serve", value }];
    return {
      section: "startup",
      figures: [
        figure(`start to a healthy /healthz, compiled, median of ${RUNS}`, mo, "ms", { vs: bareRef(mb) }),
        figure("idle RSS, 3 s after healthy", oursIdle.rss / 1024, "MiB", { vs: bareRef(bareIdle.rss / 1024) }),
      ],
      targets: [
        { name: "start-up", measured: mo, op: "<", bound: 150, unit: " ms" },
        { name: "idle RSS", measured: (oursIdle.rss * 1024) / 1e6, op: "<", bound: 80, unit: " MB" },
      ],
      notes: [],
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) await benchStartup();
