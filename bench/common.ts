/** Small helpers every benchmark uses. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";

/** A port nothing listens on right now (127.0.0.1). */
export async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** Poll `url` until it answers; fail when `proc` exits or after 20 s. */
export async function waitHttp(url: string, proc: Subprocess): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`process exited with ${proc.exitCode}`);
    if (
      await fetch(url).then(
        () => true,
        () => false,
      )
    )
      return;
    if (performance.now() - t0 > 20_000) throw new Error(`${url} not up`);
    await Bun.sleep(50);
  }
}

/**
 * `bun bench/peers/SCRIPT PORT ...args` in its own process on a free port, answering before
 * `use` gets its base URL; stopped after, whatever `use` did.
 */
export async function withPeer<T>(
  script: string,
  args: readonly string[],
  use: (url: string, proc: Subprocess) => Promise<T>,
): Promise<T> {
  const root = join(import.meta.dir, "..");
  const port = await freePort();
  const proc = spawn([join(root, "node_modules/.bin/bun"), join(root, "bench/peers", script), String(port), ...args], {
    stdout: "ignore",
    stderr: "inherit",
  });
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitHttp(`${url}/`, proc);
    return await use(url, proc);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}

/** A fresh temporary directory for `use`, removed after. */
export async function withTempDir<T>(prefix: string, use: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    return await use(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The value at quantile `p` of an ascending array. */
/**
 * The nearest-rank quantile: the smallest value with at least a fraction `p` of the sample at or
 * below it (the 99th of 100 values for p99, not the largest).
 */
export function quantile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil(sorted.length * p - 1e-9));
  return sorted[Math.min(sorted.length, rank) - 1] ?? Number.NaN;
}

export interface Appliance {
  proc: Subprocess;
  /** http://127.0.0.1:PORT */
  url: string;
  httpPort: number;
  smtpPort: number;
  /** Its data dir. */
  dir: string;
  /** POST/PUT to the API with the bootstrap token; throws on anything but 2xx. */
  api(method: string, path: string, body: unknown): Promise<void>;
  /** SIGTERM, wait, remove the data dir. */
  stop(): Promise<void>;
}

/**
 * `bun src/main.ts serve` in its own process on free ports and a fresh data dir, rate limits out
 * of the way, healthy before it returns. `BENCH_BUN_ARGS="--cpu-prof-md --cpu-prof-dir=/tmp/prof"`
 * profiles it.
 */
export async function startAppliance(name: string, env: Record<string, string> = {}): Promise<Appliance> {
  const root = join(import.meta.dir, "..");
  const token = `bench-${name}-bootstrap-token-0000000000`;
  const dir = mkdtempSync(join(tmpdir(), `agentowl-bench-${name}-`));
  const [httpPort, smtpPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${httpPort}`;
  const bunArgs = process.env.BENCH_BUN_ARGS?.split(" ").filter(Boolean) ?? [];
  const proc = spawn([join(root, "node_modules/.bin/bun"), ...bunArgs, join(root, "src/main.ts"), "serve"], {
    env: {
      ...process.env,
      AGENTOWL_DATA_DIR: dir,
      AGENTOWL_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
      AGENTOWL_SMTP_LISTEN: `127.0.0.1:${smtpPort}`,
      AGENTOWL_BOOTSTRAP_TOKEN: token,
      AGENTOWL_LOG_LEVEL: process.env.BENCH_APPLIANCE_LOGS ? "info" : "warn",
      AGENTOWL_INGRESS_RATE_PER_BINDING: "10000000",
      AGENTOWL_SMTP_RATE_PER_IP: "10000000",
      AGENTOWL_SMTP_RATE_PER_TENANT: "10000000",
      ...env,
    },
    stdout: process.env.BENCH_APPLIANCE_LOGS
      ? Bun.file(join(process.env.BENCH_APPLIANCE_LOGS, `${name}.log`))
      : "ignore",
    stderr: "inherit",
  });
  const stop = async () => {
    proc.kill("SIGTERM");
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitHttp(`${url}/healthz`, proc);
  } catch (e) {
    await stop();
    throw e;
  }
  const api = async (method: string, path: string, body: unknown) => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  };
  return { proc, url, httpPort, smtpPort, dir, api, stop };
}

/** Bytes a process has handed to write() so far (/proc/PID/io wchar), or null without /proc. */
export function bytesWritten(pid: number): number | null {
  try {
    return Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"))?.[1] ?? Number.NaN);
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); null elsewhere. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces, hence the last ')'): utime is the 14th, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
const CLOCK_TICKS = (() => {
  try {
    return Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;
  } catch {
    return 100;
  }
})();
