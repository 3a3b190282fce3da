/**
 * Which sandbox this machine gives the runtimes (docs/agents.md): bubblewrap on Linux where it can
 * create namespaces, sandbox-exec on macOS, a plain process elsewhere, with the reason said.
 * Probed once: the answer does not change while the appliance runs.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import type { Isolation } from "../types.ts";

export interface IsolationInfo {
  isolation: Isolation;
  /** Why it is not better: set when isolation is `process`. */
  reason: string | null;
}

export const SANDBOX_EXEC = "/usr/bin/sandbox-exec";

let cached: IsolationInfo | null = null;

/** The first `name` on PATH that is an executable file. */
export function which(name: string, path = process.env.PATH ?? "/usr/bin:/bin"): string | null {
  for (const dir of path.split(":")) if (dir && existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  return null;
}

const BWRAP_PROBE = ["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"];
const PROBE_TIMEOUT_MS = 10_000;

/** What `bwrap` running `true` in fresh namespaces said. */
function bwrapVerdict(
  status: number | null,
  stderr: string,
  error: string | null,
  signal: string | null,
): IsolationInfo {
  if (status === 0) return { isolation: "bwrap", reason: null };
  const why = stderr.trim() || error || `exit ${status ?? signal}`;
  return { isolation: "process", reason: `bwrap cannot create namespaces here: ${why}` };
}

/** The answer without running anything, or null when bwrap must be tried. */
function known(): IsolationInfo | null {
  if (process.platform === "linux") {
    if (!which("bwrap"))
      return { isolation: "process", reason: "bwrap is not installed (Debian: apt install bubblewrap)" };
    return null;
  }
  if (process.platform === "darwin") {
    if (existsSync(SANDBOX_EXEC)) return { isolation: "sandbox-exec", reason: null };
    return { isolation: "process", reason: `${SANDBOX_EXEC} is missing` };
  }
  return { isolation: "process", reason: `no sandbox is known on ${process.platform}` };
}

/** The probe itself, uncached (detectIsolation caches it; tests compare the two ways of running it). */
export function probe(): IsolationInfo {
  const answer = known();
  if (answer) return answer;
  const r = spawnSync(which("bwrap")!, BWRAP_PROBE, { stdio: ["ignore", "ignore", "pipe"], timeout: PROBE_TIMEOUT_MS });
  return bwrapVerdict(r.status, r.stderr?.toString() ?? "", r.error?.message ?? null, r.signal);
}

export async function probeAsync(): Promise<IsolationInfo> {
  const answer = known();
  if (answer) return answer;
  try {
    const proc = Bun.spawn([which("bwrap")!, ...BWRAP_PROBE], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      timeout: PROBE_TIMEOUT_MS,
    });
    const [status, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    return bwrapVerdict(status, stderr, null, proc.signalCode === null ? null : String(proc.signalCode));
  } catch (e) {
    return bwrapVerdict(null, "", (e as Error).message, null);
  }
}

export function detectIsolation(): IsolationInfo {
  cached ??= probe();
  return cached;
}

let probing: Promise<IsolationInfo> | null = null;

/**
 * The same answer without holding the event loop while bwrap starts (10-25 ms, more on a busy
 * machine): start-up runs it beside its other steps.
 */
export function detectIsolationAsync(): Promise<IsolationInfo> {
  if (cached) return Promise.resolve(cached);
  probing ??= probeAsync().then((info) => (cached ??= info));
  return probing;
}
