/**
 * `agentowl` as a real process, for the end-to-end tests: from source (`bun src/main.ts`) or, when
 * AGENTOWL_TEST_BINARY names one, the compiled binary (`AGENTOWL_TEST_BINARY=dist/agentowl bun test test/e2e`).
 * Every process started here is remembered; `killLeftovers()` (run it in afterEach) SIGKILLs the
 * ones still running, so a failing test never leaves a server behind.
 */
import type { Subprocess } from "bun";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..", "..");

/** The argv that runs `agentowl`. */
export function agentowlArgv(args: readonly string[]): string[] {
  const binary = process.env.AGENTOWL_TEST_BINARY;
  if (binary) return [resolve(ROOT, binary), ...args];
  return [process.execPath, join(ROOT, "src", "main.ts"), ...args];
}

/**
 * The environment of the process under test: ours without any AGENTOWL_* variable (the server
 * refuses unknown ones, AGENTOWL_TEST_BINARY included), plus `env`.
 */
export function agentowlEnv(env: Record<string, string>): Record<string, string> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("AGENTOWL_")) base[k] = v;
  return { ...base, ...env };
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Working directory; pass a temp dir so nothing lands in the repository. */
  cwd: string;
  /** SIGKILL the process after this long (the result then has code null). */
  timeoutMs?: number;
  /** Text on its stdin; none (/dev/null) when absent. */
  stdin?: string;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall-clock time from spawn to exit. */
  ms: number;
}

const started = new Set<Subprocess>();

/** Spawn `agentowl <args>` with piped output, remembered so that killLeftovers can end it. */
function spawnAgentowl(
  args: readonly string[],
  opts: Omit<RunOptions, "timeoutMs">,
  extra: { timeout?: number; killSignal?: "SIGKILL" } = {},
) {
  const proc = Bun.spawn(agentowlArgv(args), {
    cwd: opts.cwd,
    env: agentowlEnv(opts.env ?? {}),
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    ...extra,
  });
  started.add(proc);
  return proc;
}

/** Run `agentowl <args>` to completion. */
export async function runAgentowl(args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const t0 = performance.now();
  const proc = spawnAgentowl(args, opts, { timeout: opts.timeoutMs ?? 20_000, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  started.delete(proc);
  return { code: proc.signalCode ? null : code, stdout, stderr, ms: performance.now() - t0 };
}

async function pump(stream: ReadableStream<Uint8Array>, onText: (text: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) onText(decoder.decode(chunk, { stream: true }));
}

/** A long-running `agentowl` (e.g. `serve`) whose stdout is read line by line as it comes. */
export class Running {
  readonly lines: string[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;
  private readonly waiters = new Set<() => void>();
  private done = false;

  constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    let partial = "";
    const out = pump(proc.stdout, (text) => {
      const parts = (partial + text).split("\n");
      partial = parts.pop()!;
      this.lines.push(...parts);
      this.notify();
    }).then(() => partial && this.lines.push(partial));
    const err = pump(proc.stderr, (text) => {
      this.stderr += text;
      this.notify();
    });
    this.exited = Promise.all([out, err, proc.exited]).then(() => {
      this.done = true;
      this.notify();
      return proc.signalCode ? null : proc.exitCode;
    });
  }

  private notify(): void {
    for (const w of this.waiters) w();
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Every stdout line so far, parsed as JSON (a line that is not JSON fails the test here). */
  get logs(): Record<string, unknown>[] {
    return this.lines.filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /**
   * Wait until `find` returns something for the output so far; fails with the output when the
   * process exits first or the deadline passes.
   */
  async waitFor<T>(what: string, find: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found) return found;
      if (this.done || performance.now() > deadline) {
        const why = this.done
          ? `agentowl exited (code ${this.proc.exitCode}) before ${what}`
          : `no ${what} within ${timeoutMs} ms`;
        throw new Error(`${why}\nstdout:\n${this.lines.join("\n")}\nstderr:\n${this.stderr}`);
      }
      // Sleep until the process writes or exits, or the deadline passes.
      await new Promise<void>((wake) => {
        const done = (): void => {
          clearTimeout(timer);
          this.waiters.delete(done);
          wake();
        };
        const timer = setTimeout(done, Math.max(0, deadline - performance.now()) + 1);
        this.waiters.add(done);
      });
    }
  }

  /** The first log line with this `msg`. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>> {
    return this.waitFor(`log line "${msg}"`, () => this.logs.find((l) => l.msg === msg), timeoutMs);
  }

  /** Wait for the process to exit; SIGKILL it (and fail) when it takes longer than `timeoutMs`. */
  async exit(timeoutMs: number): Promise<number | null> {
    let timer: Timer | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), timeoutMs)));
    const result = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (result === "late") {
      this.proc.kill("SIGKILL");
      throw new Error(
        `agentowl did not exit within ${timeoutMs} ms\nstdout:\n${this.lines.join("\n")}\nstderr:\n${this.stderr}`,
      );
    }
    return result;
  }
}

/** Start `agentowl <args>` in the background. */
export function startAgentowl(args: readonly string[], opts: Omit<RunOptions, "timeoutMs">): Running {
  const proc = spawnAgentowl(args, opts);
  void proc.exited.then(() => started.delete(proc));
  return new Running(proc);
}

/** SIGKILL every process this module started that is still running, and wait for them to go. */
export async function killLeftovers(): Promise<void> {
  const left = [...started];
  for (const proc of left) proc.kill("SIGKILL");
  await Promise.all(left.map((p) => p.exited));
  started.clear();
}

/** Wait until `check` holds (re-checked every `everyMs`), or fail naming `what` after `timeoutMs`. */
export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  everyMs = 20,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    // The poll between two checks of the condition, not a wait for something to happen.
    await Bun.sleep(everyMs);
  }
}

/** True when nothing accepts TCP connections at `url` any more. */
export async function refusesConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  try {
    const socket = await Bun.connect({ hostname, port: Number(port), socket: { data() {} } });
    socket.end();
    return false;
  } catch {
    return true;
  }
}

/**
 * `agentowl serve` on `dataDir`, HTTP and SMTP on free loopback ports, no DNS (sender auth says
 * temperror at once), no greeting pause; resolves when it logs where it listens.
 */
export async function serveAgentowl(opts: {
  cwd: string;
  dataDir: string;
  token: string;
  env?: Record<string, string>;
}): Promise<{ server: Running; url: string; smtpPort: number }> {
  const server = startAgentowl(["serve"], {
    cwd: opts.cwd,
    env: {
      AGENTOWL_DATA_DIR: opts.dataDir,
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_BOOTSTRAP_TOKEN: opts.token,
      AGENTOWL_SMTP_GREETING_DELAY: "0ms",
      AGENTOWL_DNS_SERVERS: "127.0.0.1:9",
      AGENTOWL_DNS_TIMEOUT: "100ms",
      ...opts.env,
    },
  });
  const serving = await server.waitForLog("agentowl serving", 20_000);
  return { server, url: serving.http as string, smtpPort: Number(String(serving.smtp).split(":").pop()) };
}

/**
 * Stop a process started under `script` (a terminal for it): SIGTERM to what runs inside the
 * terminal first, then to `script`. killLeftovers does not know those children, so a test that
 * fails half-way must still end them here (in a finally).
 */
export async function stopUnderTerminal(running: Running, timeoutMs = 20_000): Promise<void> {
  Bun.spawnSync(["pkill", "-TERM", "-P", String(running.pid)]);
  running.proc.kill("SIGTERM");
  await running.exit(timeoutMs).catch(() => {
    Bun.spawnSync(["pkill", "-KILL", "-P", String(running.pid)]);
  });
}
