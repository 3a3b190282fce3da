/**
 * Agent runtime isolation (docs/agents.md): a runtime started by launchRuntime in bubblewrap
 * reaches no network, no other runtime's files, nothing of the appliance's data, writes only its
 * own directory and /tmp, talks to the appliance over its bound socket, carries its limits, and
 * dies whole when killed. Skipped, with the reason printed, only where bwrap cannot create
 * namespaces; the process-tree kill is also checked without a sandbox.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashRuntimeToken, newRuntimeToken, openChannel } from "../../src/agents/channel.ts";
import { detectIsolation, type LaunchOptions, launchRuntime } from "../../src/agents/sandbox/index.ts";
import type { Isolation, LaunchedRuntime, RuntimeChannel, RuntimeLimits } from "../../src/agents/types.ts";

const LIMITS: RuntimeLimits = { memoryBytes: 256 * 1024 * 1024, cpu: 0.5, openFiles: 256, processes: 512 };

const { isolation, reason } = detectIsolation();
const why = process.platform !== "linux" ? `${process.platform}: no bwrap` : isolation === "bwrap" ? null : reason;
if (why) console.log(`agents sandbox isolation tests skipped: ${why}`);

let data: string;
const launched: LaunchedRuntime[] = [];
const channels: RuntimeChannel[] = [];

beforeAll(() => {
  data = mkdtempSync(join(tmpdir(), "agsbx-"));
  writeFileSync(join(data, "agentowl.db"), "the appliance's database");
});

afterEach(async () => {
  for (const r of launched.splice(0)) await r.kill(200);
  for (const c of channels.splice(0)) await c.close();
});

afterAll(() => rmSync(data, { recursive: true, force: true }));

/** A runtime's directory and (listening) socket under the data dir, as the pool makes them. */
async function runtimeDirs(id: string, token = newRuntimeToken()) {
  const dir = join(data, "agents", "rt", id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(data, "agents", "run", `${id}.sock`);
  const refused: string[] = [];
  const channel = await openChannel({
    runtimeId: id,
    socketPath: socket,
    tokenHash: hashRuntimeToken(token),
    helloTimeoutMs: 20_000,
    onRefused: (r) => refused.push(r),
  });
  channels.push(channel);
  return { dir, socket, token, channel, refused };
}

/** Runs `script` with sh in runtime `id`'s sandbox; resolves with its exit code and output lines. */
async function runIn(id: string, script: string, opts: LaunchOptions & { isolation?: Isolation } = {}) {
  const { dir, socket, token } = await runtimeDirs(id);
  const lines: string[] = [];
  const rt = launchRuntime(
    {
      id,
      dir,
      socket,
      token,
      command: ["/bin/sh", "-c", script],
      limits: LIMITS,
      onOutput: (_s, l) => lines.push(l),
      onExit: () => {},
    },
    opts,
  );
  launched.push(rt);
  const { code } = await rt.exited;
  // The pipes may deliver their last lines just after the exit.
  await waitFor(() => rt.lines().length >= lines.length);
  return { code, lines, rt };
}

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every process under `pid` (children, their children…), from /proc. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    let kids: number[] = [];
    try {
      for (const t of readdirSync(`/proc/${p}/task`))
        kids.push(...readFileSync(`/proc/${p}/task/${t}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number));
    } catch {
      kids = [];
    }
    for (const k of kids) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
};

describe("an agent runtime in bubblewrap", () => {
  let listener: Server;
  let connections = 0;
  let port = 0;

  beforeAll(async () => {
    listener = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, "127.0.0.1", () => r()));
    port = (listener.address() as { port: number }).port;
  });
  afterAll(() => listener.close());

  test.if(why === null)("cannot open a TCP connection to a listener on the host's 127.0.0.1", async () => {
    const r = await runIn("rt_net", `exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port}' 2>&1; echo unreachable`);
    console.log(`  inside: ${r.lines.join(" / ")}`);
    expect(r.lines.join("\n")).toMatch(/Connection refused|Network is unreachable/);
    expect(r.code).not.toBe(0);
    expect(connections).toBe(0);
  });

  test.if(why === null)(
    "sees neither another runtime's directory nor the appliance's data; writes only /work and /tmp",
    async () => {
      const other = join(data, "agents", "rt", "rt_other");
      mkdirSync(other, { recursive: true });
      writeFileSync(join(other, "notes.txt"), "the other runtime's file");
      const checks = [
        `test -e ${other}/notes.txt && echo SEES_OTHER`,
        `test -e ${data}/agentowl.db && echo SEES_DATA`,
        `ls ${join(data, "agents", "run")} >/dev/null 2>&1 && echo SEES_SOCKETS`,
        "echo w > /work/mine && echo WROTE_WORK",
        "echo w > /tmp/t && echo WROTE_TMP",
        "echo w > /usr/x 2>/dev/null && echo WROTE_USR",
        "echo w > /etc/x 2>/dev/null && echo WROTE_ETC",
        "echo w > /x 2>/dev/null && echo WROTE_ROOT",
        "test -S /run/agentowl.sock && echo HAS_SOCKET",
        'echo "PWD=$(pwd) HOME=$HOME SOCKET=$AGENTOWL_RUNTIME_SOCKET"',
        "ls /",
      ];
      const r = await runIn("rt_fs", checks.join("; "));
      const out = r.lines.join("\n");
      console.log(`  inside: ${r.lines.join(" / ")}`);
      expect(out).not.toMatch(/SEES_OTHER|SEES_DATA|SEES_SOCKETS|WROTE_USR|WROTE_ETC|WROTE_ROOT/);
      expect(out).toContain("WROTE_WORK");
      expect(out).toContain("WROTE_TMP");
      expect(out).toContain("HAS_SOCKET");
      expect(out).toContain("PWD=/work HOME=/work SOCKET=/run/agentowl.sock");
      expect(readFileSync(join(data, "agents", "rt", "rt_fs", "mine"), "utf8")).toBe("w\n");
      expect(out).not.toContain(data);
    },
  );

  test.if(why === null)("its limits are visible from inside (open files, processes, address space)", async () => {
    const r = await runIn("rt_lim", "cat /proc/self/limits");
    const row = (name: string) => r.lines.find((l) => l.startsWith(name))?.split(/\s{2,}/);
    expect(r.rt.limitsBy).toMatch(/^(cgroup|rlimit)$/);
    if (r.rt.limitsBy === "rlimit") {
      expect(row("Max open files")?.[1]).toBe(String(LIMITS.openFiles));
      expect(row("Max processes")?.[1]).toBe(String(LIMITS.processes));
      expect(Number(row("Max address space")?.[1])).toBeGreaterThan(LIMITS.memoryBytes);
    }
    console.log(
      `  limits by ${r.rt.limitsBy}: ${["Max open files", "Max processes", "Max address space"].map((n) => row(n)?.slice(0, 2).join(" ")).join("; ")}`,
    );
  });

  test.if(why === null)(
    "the reference runtime connects over the bound socket, answers hello with its token, and is configured (start-up printed)",
    async () => {
      const { dir, socket, token, channel, refused } = await runtimeDirs("rt_ref");
      const lines: string[] = [];
      const t0 = performance.now();
      const rt = launchRuntime({
        id: "rt_ref",
        dir,
        socket,
        token,
        limits: LIMITS,
        onOutput: (s, l) => lines.push(`${s}: ${l}`),
        onExit: () => {},
      });
      launched.push(rt);
      expect(rt.isolation).toBe("bwrap");
      await channel.authenticated.catch((e) => {
        throw new Error(`${e}; output: ${lines.join(" / ")}`);
      });
      const helloMs = performance.now() - t0;
      expect(
        await channel.request(
          "configure",
          {
            tenant: "beta",
            agent: "hello",
            template: {
              name: "t",
              version: 1,
              instructions: "x",
              model: { default: "m", allow_override: false },
              tools: [],
            },
            user_config: {},
          },
          5000,
        ),
      ).toEqual({});
      await waitFor(() => lines.some((l) => l.includes("configured as hello of beta")));
      const rss = [rt.pid, ...descendants(rt.pid)]
        .map((p) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1] ?? 0))
        .reduce((a, b) => a + b, 0);
      console.log(
        `  reference runtime from source in bwrap: hello answered ${helloMs.toFixed(0)} ms after launch; RSS of the sandbox's processes ${(rss / 1024).toFixed(1)} MiB`,
      );
      expect(refused).toEqual([]);
    },
  );

  test.if(why === null)("another runtime's token on this socket is refused", async () => {
    const { dir, socket, channel, refused } = await runtimeDirs("rt_tok");
    const rt = launchRuntime({
      id: "rt_tok",
      dir,
      socket,
      token: newRuntimeToken(),
      limits: LIMITS,
      onOutput: () => {},
      onExit: () => {},
    });
    launched.push(rt);
    await expect(channel.authenticated).rejects.toMatchObject({ kind: "unauthenticated" });
    expect(refused).toEqual(["wrong token"]);
    expect((await rt.exited).code).toBe(0);
  });

  test.if(why === null)("kill() ends the whole sandbox: every process in it is gone", async () => {
    const { dir, socket, token } = await runtimeDirs("rt_kill");
    const rt = launchRuntime({
      id: "rt_kill",
      dir,
      socket,
      token,
      command: ["/bin/sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & echo started; wait"],
      limits: LIMITS,
      onOutput: () => {},
      onExit: () => {},
    });
    launched.push(rt);
    await waitFor(() => rt.lines().includes("started") && descendants(rt.pid).length >= 3);
    const tree = [rt.pid, ...descendants(rt.pid)];
    await rt.kill(300);
    await waitFor(() => tree.every((p) => !alive(p)));
    expect(tree.filter(alive)).toEqual([]);
  });
});

describe("an agent runtime as a plain process", () => {
  test.if(process.platform === "linux")(
    "kill() ends its process group, SIGKILL after the grace period for what ignores SIGTERM",
    async () => {
      const { dir, socket, token } = await runtimeDirs("rt_plain");
      const rt = launchRuntime(
        {
          id: "rt_plain",
          dir,
          socket,
          token,
          command: ["/bin/sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & echo started; wait"],
          limits: LIMITS,
          onOutput: () => {},
          onExit: () => {},
        },
        { isolation: "process" },
      );
      launched.push(rt);
      expect(rt.isolation).toBe("process");
      await waitFor(() => rt.lines().includes("started") && descendants(rt.pid).length >= 2);
      const tree = [rt.pid, ...descendants(rt.pid)];
      const t0 = performance.now();
      await rt.kill(300);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
      await waitFor(() => tree.every((p) => !alive(p)));
      expect(tree.filter(alive)).toEqual([]);
    },
  );
});
