/**
 * Starts one runtime's process in the best sandbox this machine has (docs/agents.md), under its
 * limits, with its output read line by line; `kill()` ends the whole of it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { realpathSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { AppError } from "../../errors/index.ts";
import { isCompiledBinary } from "../../version.ts";
import type { Isolation, LaunchedRuntime, LaunchSpec } from "../types.ts";
import { bwrapArgs, SANDBOX_SOCKET, SANDBOX_WORK } from "./bwrap.ts";
import { detectIsolation, SANDBOX_EXEC, which } from "./isolation.ts";
import { type CgroupHost, cgroupParent, createCgroup, prlimitArgs, removeCgroup, systemCgroupHost } from "./limits.ts";
import { LineSplitter, Ring } from "./output.ts";
import { sandboxExecProfile } from "./sandbox-exec.ts";

export const KILL_GRACE_MS = 2000;
const PATH = "/usr/local/bin:/usr/bin:/bin";

/** A program to run: its argv outside a sandbox and inside bwrap, and what bwrap must bind for it. */
export interface RuntimeProgram {
  host: string[];
  sandboxed: string[];
  readOnly: [string, string][];
}

/**
 * This executable's `runtime` command. Compiled, the binary is all it needs; from source, Bun and
 * src/ (the runtime imports no package). Inside bwrap they sit at /opt/agentowl, so that no host
 * path (the repository may be under /work) is mirrored into the sandbox.
 */
export function defaultRuntimeProgram(): RuntimeProgram {
  const exe = realpathSync(process.execPath);
  if (isCompiledBinary())
    return {
      host: [exe, "runtime"],
      sandboxed: ["/opt/agentowl/agentowl", "runtime"],
      readOnly: [[exe, "/opt/agentowl/agentowl"]],
    };
  const src = resolve(import.meta.dir, "..", "..");
  return {
    host: [exe, join(src, "main.ts"), "runtime"],
    sandboxed: ["/opt/agentowl/bin/bun", "/opt/agentowl/src/main.ts", "runtime"],
    readOnly: [
      [exe, "/opt/agentowl/bin/bun"],
      [src, "/opt/agentowl/src"],
    ],
  };
}

/** A template's own command: the same argv everywhere, with its files bound at their own paths. */
function customProgram(command: readonly string[], readOnlyPaths: readonly string[]): RuntimeProgram {
  return { host: [...command], sandboxed: [...command], readOnly: readOnlyPaths.map((p) => [p, p]) };
}

export interface LaunchOptions {
  /** Instead of the detected one (tests; a template that allows running unsandboxed). */
  isolation?: Isolation;
  /** Where cgroup v2 is; null: do not use cgroups. */
  cgroup?: CgroupHost | null;
  /** The prlimit executable; null: do not set rlimits. */
  prlimit?: string | null;
}

let defaultCgroupParent: string | null | undefined;

/** The argv and environment of one runtime, before limits are applied. */
function sandboxed(spec: LaunchSpec, isolation: Isolation, program: RuntimeProgram) {
  const env = { PATH, AGENTOWL_RUNTIME_TOKEN: spec.token, AGENTOWL_RUNTIME_ID: spec.id };
  switch (isolation) {
    case "bwrap": {
      const bwrap = which("bwrap") ?? "bwrap";
      const args = bwrapArgs({ dir: spec.dir, socket: spec.socket, readOnly: program.readOnly });
      return {
        argv: [bwrap, ...args, ...program.sandboxed],
        env: { ...env, HOME: SANDBOX_WORK, AGENTOWL_RUNTIME_SOCKET: SANDBOX_SOCKET },
      };
    }
    case "sandbox-exec": {
      const dataDir = spec.dataDir ?? dirname(dirname(dirname(spec.dir)));
      const profile = sandboxExecProfile({ dir: spec.dir, socket: spec.socket, dataDir });
      return {
        argv: [SANDBOX_EXEC, "-p", profile, ...program.host],
        env: { ...env, HOME: spec.dir, AGENTOWL_RUNTIME_SOCKET: spec.socket },
      };
    }
    case "process":
      return { argv: program.host, env: { ...env, HOME: spec.dir, AGENTOWL_RUNTIME_SOCKET: spec.socket } };
  }
}

export function launchRuntime(spec: LaunchSpec, opts: LaunchOptions = {}): LaunchedRuntime {
  const isolation = opts.isolation ?? detectIsolation().isolation;
  const program = spec.command ? customProgram(spec.command, spec.readOnlyPaths ?? []) : defaultRuntimeProgram();
  let { argv, env } = sandboxed(spec, isolation, program);

  const prlimit = opts.prlimit !== undefined ? opts.prlimit : process.platform === "linux" ? which("prlimit") : null;
  if (prlimit) argv = [...prlimitArgs(prlimit, spec.limits), ...argv];
  const parent =
    opts.cgroup !== undefined
      ? opts.cgroup && cgroupParent(opts.cgroup)
      : (defaultCgroupParent ??= process.platform === "linux" ? cgroupParent(systemCgroupHost()) : null);
  const cgroup = parent ? createCgroup(parent, spec.id, spec.limits) : null;
  // The wrapper enters the cgroup before the runtime starts, so every process it makes is inside.
  if (cgroup) argv = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, ...argv];
  const limitsBy = cgroup ? "cgroup" : prlimit ? "rlimit" : "none";

  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { cwd: spec.dir, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    if (cgroup) removeCgroup(cgroup);
    throw new AppError("unavailable", `cannot start runtime ${spec.id}: ${(e as Error).message}`, { cause: e });
  }
  const pid = child.pid;
  if (pid === undefined) {
    if (cgroup) removeCgroup(cgroup);
    throw new AppError("unavailable", `cannot start runtime ${spec.id}: ${argv[0]} did not start`);
  }

  const ring = new Ring<string>();
  for (const name of ["stdout", "stderr"] as const) {
    const lines = new LineSplitter((line) => {
      ring.push(line);
      spec.onOutput(name, line);
    });
    const stream = child[name]!;
    stream.setEncoding("utf8");
    stream.on("data", (text: string) => lines.push(text));
    stream.on("end", () => lines.flush());
  }

  let done = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolveExit) => {
    child.once("exit", (code, signal) => {
      done = true;
      if (cgroup) removeCgroup(cgroup);
      spec.onExit(code, signal);
      resolveExit({ code, signal });
    });
  });
  child.on("error", () => {});

  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already.
    }
  };

  return {
    pid,
    isolation,
    limitsBy,
    lines: () => ring.list(),
    exited,
    async kill(graceMs = KILL_GRACE_MS) {
      if (done) return;
      signalGroup("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
      ]);
      clearTimeout(timer);
      if (late) signalGroup("SIGKILL");
      await exited;
    },
  };
}
