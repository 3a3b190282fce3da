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

function probe(): IsolationInfo {
  if (process.platform === "linux") {
    const bwrap = which("bwrap");
    if (!bwrap) return { isolation: "process", reason: "bwrap is not installed (Debian: apt install bubblewrap)" };
    const r = spawnSync(bwrap, ["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"], {
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 10_000,
    });
    if (r.status === 0) return { isolation: "bwrap", reason: null };
    const why = r.stderr?.toString().trim() || (r.error ? r.error.message : `exit ${r.status ?? r.signal}`);
    return { isolation: "process", reason: `bwrap cannot create namespaces here: ${why}` };
  }
  if (process.platform === "darwin") {
    if (existsSync(SANDBOX_EXEC)) return { isolation: "sandbox-exec", reason: null };
    return { isolation: "process", reason: `${SANDBOX_EXEC} is missing` };
  }
  return { isolation: "process", reason: `no sandbox is known on ${process.platform}` };
}

export function detectIsolation(): IsolationInfo {
  cached ??= probe();
  return cached;
}
