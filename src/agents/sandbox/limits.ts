/**
 * A runtime's resource limits: a cgroup v2 child (memory.max, pids.max, cpu.max) where the
 * appliance may create one, and rlimits set by util-linux's `prlimit` around the command (open
 * files, processes, address space) where it is installed. The launcher says which enforced them.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RuntimeLimits } from "../types.ts";

/**
 * Address space beyond the memory limit: the JavaScript engine reserves a few hundred MiB of
 * address space at start (Bun does not start under 400 MiB), which is not memory in use.
 */
export const ADDRESS_SPACE_HEADROOM = 512 * 1024 * 1024;

/** The argv prefix that runs a command under the limits' rlimits. */
export function prlimitArgs(prlimit: string, limits: RuntimeLimits): string[] {
  const both = (n: number) => `${n}:${n}`;
  return [
    prlimit,
    `--nofile=${both(limits.openFiles)}`,
    `--nproc=${both(limits.processes)}`,
    `--as=${both(limits.memoryBytes + ADDRESS_SPACE_HEADROOM)}`,
    "--",
  ];
}

export interface CgroupHost {
  /** Where cgroup v2 is mounted (/sys/fs/cgroup). */
  root: string;
  /** This process's own cgroup, from /proc/self/cgroup (`0::/path`). */
  self: string | null;
}

const CONTROLLERS = ["memory", "pids", "cpu"];

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

export function systemCgroupHost(): CgroupHost {
  const line = (read("/proc/self/cgroup") ?? "").split("\n").find((l) => l.startsWith("0::"));
  return { root: "/sys/fs/cgroup", self: line ? line.slice(3).trim() : null };
}

/**
 * The cgroup under which runtimes' cgroups can be made, or null: cgroup v2 (a unified hierarchy
 * with cgroup.controllers), writable, with memory, pids and cpu enabled for its children or
 * enableable. The appliance's own cgroup is preferred (a delegated one under systemd), then the root.
 */
export function cgroupParent(host: CgroupHost): string | null {
  if (!existsSync(join(host.root, "cgroup.controllers"))) return null;
  const candidates = [host.self && host.self !== "/" ? join(host.root, host.self) : null, host.root];
  for (const dir of candidates) {
    if (!dir) continue;
    const available = (read(join(dir, "cgroup.controllers")) ?? "").split(/\s+/);
    if (!CONTROLLERS.every((c) => available.includes(c))) continue;
    const enabled = () =>
      (read(join(dir, "cgroup.subtree_control")) ?? "").split(/\s+/).map((c) => c.replace(/^\+/, ""));
    if (!CONTROLLERS.every((c) => enabled().includes(c))) {
      try {
        writeFileSync(join(dir, "cgroup.subtree_control"), CONTROLLERS.map((c) => `+${c}`).join(" "));
      } catch {
        // A cgroup with processes of its own cannot give controllers to children (but the root).
        continue;
      }
      if (!CONTROLLERS.every((c) => enabled().includes(c))) continue;
    }
    return dir;
  }
  return null;
}

/** Makes `agentowl-<id>` under `parent` with the limits; the launcher moves the runtime in before it starts. */
export function createCgroup(parent: string, id: string, limits: RuntimeLimits): string {
  const dir = join(parent, `agentowl-${id}`);
  mkdirSync(dir, { recursive: true });
  try {
    writeFileSync(join(dir, "memory.max"), String(limits.memoryBytes));
    writeFileSync(join(dir, "pids.max"), String(limits.processes));
    const period = 100_000;
    writeFileSync(join(dir, "cpu.max"), `${Math.max(1000, Math.round(limits.cpu * period))} ${period}`);
    if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
  } catch (e) {
    removeCgroup(dir);
    throw e;
  }
  return dir;
}

/** Removes a runtime's cgroup, ending what still runs in it (cgroup.kill) first. */
export function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  try {
    rmdirSync(dir);
    return;
  } catch {
    // Busy: processes are left in it.
  }
  try {
    writeFileSync(join(dir, "cgroup.kill"), "1");
  } catch {
    // Older kernels have no cgroup.kill; the processes end with their sandbox.
  }
  try {
    rmdirSync(dir);
  } catch {
    // Still busy for a moment; the next start's reconcile removes what is left.
  }
}
