/**
 * The hostile-input suites' shared parts: a seeded random source (the seed is
 * printed; HOSTILE_SEED=<n> replays it), a real `agentowl serve` process, and a "family" of
 * attacks that ends with the checks every family owes: the server is alive and answers /healthz,
 * no event-loop stall over 250 ms happened meanwhile (read from the server's own /metrics), and
 * its resident memory stays under RSS_BOUND_MB (read from /proc/<pid>/status).
 */
import { expect } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiCaller } from "./api.ts";
import { killLeftovers, type Running, serveAgentowl } from "./process.ts";

/** guarantee 9 (docs/guarantees.md): no stall over 250 ms. */
export const STALL_LIMIT_SECONDS = 0.25;
/**
 * The resident-memory bound the server must stay under whatever it is sent. An idle server is
 * about 100-130 MB; a 10 MB SMTP line, 1 MB webhooks and 1 MB mails in flight add tens of MB.
 */
export const RSS_BOUND_MB = 400;

/** mulberry32: small, fast, good enough to pick mutations; the same seed gives the same run. */
export class Seeded {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** [0, 1) */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** The run's random source: HOSTILE_SEED when set, else a fresh seed; printed either way. */
export function seeded(suite: string): Seeded {
  const fromEnv = process.env.HOSTILE_SEED;
  const seed = fromEnv ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.log(`[hostile] ${suite}: seed ${seed} (replay with HOSTILE_SEED=${seed})`);
  return new Seeded(seed);
}

/** Byte-level mutations of a valid input: flips, random bytes, cuts, repeats, CR/LF/NUL inserted. */
export function mutate(rnd: Seeded, input: Uint8Array, edits = 1 + rnd.int(4)): Uint8Array {
  let b = Buffer.from(input);
  for (let e = 0; e < edits; e++) {
    const at = b.length ? rnd.int(b.length) : 0;
    switch (rnd.int(6)) {
      case 0: // flip a byte
        if (b.length) b[at] = rnd.int(256);
        break;
      case 1: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), rnd.bytes(1 + rnd.int(16)), b.subarray(at)]);
        break;
      case 2: // delete a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rnd.int(32)))]);
        break;
      case 3: // repeat a run
        b = Buffer.concat([b.subarray(0, at + Math.min(16, b.length - at)), b.subarray(at)]);
        break;
      case 4: // a control byte the protocols care about
        b = Buffer.concat([b.subarray(0, at), Buffer.from([rnd.pick([0, 10, 13, 0x2e, 0xff, 0x80])]), b.subarray(at)]);
        break;
      default: // cut
        b = b.subarray(0, at);
    }
  }
  return new Uint8Array(b);
}

/** The event-loop stall histogram and max, as the server exports them. */
export interface StallReading {
  count: number;
  over: number;
  maxSeconds: number;
}

function metricValue(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

export function readStalls(metrics: string): StallReading {
  const count = metricValue(metrics, /^agentowl_event_loop_stall_seconds_count (\S+)$/m);
  const under = metricValue(metrics, /^agentowl_event_loop_stall_seconds_bucket\{le="0\.25"\} (\S+)$/m);
  return {
    count,
    over: count - under,
    maxSeconds: metricValue(metrics, /^agentowl_event_loop_stall_max_seconds (\S+)$/m),
  };
}

function buckets(text: string): [string, number][] {
  return [...text.matchAll(/^agentowl_event_loop_stall_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)].map((m) => [
    m[1]!,
    Number(m[2]),
  ]);
}

/** The smallest bucket bound under which every tick between two scrapes fell: "the worst stall was ≤ X s". */
function worstBucket(before: string, after: string): string {
  const b = new Map(buckets(before));
  const a = buckets(after);
  const total = (a.at(-1)?.[1] ?? 0) - (b.get("+Inf") ?? 0);
  return a.find(([le, n]) => n - (b.get(le) ?? 0) >= total)?.[0] ?? "?";
}

/** What a family of attacks tried and what came back, printed as one line when it ends. */
export class Family {
  readonly tried = new Map<string, number>();
  readonly answers = new Map<string, number>();
  private readonly t0 = performance.now();

  constructor(
    private readonly server: HostileServer,
    readonly name: string,
    private readonly metricsBefore: string,
  ) {}

  try(what: string, n = 1): void {
    this.tried.set(what, (this.tried.get(what) ?? 0) + n);
  }

  saw(answer: string | number, n = 1): void {
    const k = String(answer);
    this.answers.set(k, (this.answers.get(k) ?? 0) + n);
  }

  get total(): number {
    let n = 0;
    for (const v of this.tried.values()) n += v;
    return n;
  }

  /** Print what was tried, then: alive, no stall over 250 ms since the family began, RSS bounded. */
  async end(): Promise<void> {
    const alive = this.server.alive;
    const health = alive
      ? await fetch(`${this.server.url}/healthz`).then(
          (r) => r.status,
          () => 0,
        )
      : 0;
    const after = alive ? await this.server.metrics() : this.metricsBefore;
    const b = readStalls(this.metricsBefore);
    const a = readStalls(after);
    const rss = this.server.rssMb();
    const list = (m: Map<string, number>) => [...m].map(([k, v]) => `${k}×${v}`).join(", ");
    console.log(
      `[hostile] ${this.name}: ${this.total} tried (${list(this.tried)}); answers ${list(this.answers)}; ` +
        `stalls over 250 ms: ${a.over - b.over}, worst bucket ` +
        `≤${worstBucket(this.metricsBefore, after)} s; RSS ${rss.toFixed(0)} ` +
        `MB; ${((performance.now() - this.t0) / 1000).toFixed(1)} s`,
    );
    expect(alive, `${this.name}: the server process died\n${this.server.server.stderr.slice(-4000)}`).toBe(true);
    expect(health, `${this.name}: /healthz after the family`).toBe(200);
    expect(a.over - b.over, `${this.name}: event-loop stalls over 250 ms (max since start ${a.maxSeconds} s)`).toBe(0);
    expect(rss, `${this.name}: server RSS in MB`).toBeLessThan(RSS_BOUND_MB);
  }
}

/** A real `agentowl serve` for hostile input, on a temporary data dir; `close()` kills it and removes the dir. */
export class HostileServer {
  static readonly TOKEN = "bootstrap-hostile-4e8a1c6f2b9d0e3a5c7f";
  readonly call = apiCaller(() => this.url, HostileServer.TOKEN);
  private exited = false;
  server!: Running;
  url = "";
  smtpPort = 0;

  private constructor(
    readonly root: string,
    private readonly env: Record<string, string>,
  ) {}

  static async start(name: string, env: Record<string, string> = {}): Promise<HostileServer> {
    const hs = new HostileServer(mkdtempSync(join(tmpdir(), `agentowl-hostile-${name}-`)), env);
    await hs.spawn();
    return hs;
  }

  private async spawn(): Promise<void> {
    const { server, url, smtpPort } = await serveAgentowl({
      cwd: this.root,
      dataDir: this.dataDir,
      token: HostileServer.TOKEN,
      env: this.env,
    });
    this.exited = false;
    void server.exited.then(() => (this.exited = true));
    Object.assign(this, { server, url, smtpPort });
  }

  /**
   * A fresh process on the same data dir when the last one grew past the bound (its failure is
   * already reported): each family's memory is then judged on its own, not on what came before.
   */
  private async freshIfSpent(): Promise<void> {
    if (this.alive && this.rssMb() < RSS_BOUND_MB) return;
    console.log(
      `[hostile] restarting the server: ${this.alive ? `RSS ${this.rssMb().toFixed(0)} MB left by the previous family` : "it died"}`,
    );
    this.server.proc.kill("SIGKILL");
    await this.server.exited;
    await this.spawn();
  }

  get dataDir(): string {
    return join(this.root, "data");
  }

  get alive(): boolean {
    return !this.exited;
  }

  get pid(): number {
    return this.server.pid;
  }

  rssMb(): number {
    try {
      const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"))?.[1];
      return kb ? Number(kb) / 1024 : 0;
    } catch {
      return 0;
    }
  }

  metrics(): Promise<string> {
    return fetch(`${this.url}/metrics`).then((r) => r.text());
  }

  async family(name: string): Promise<Family> {
    await this.freshIfSpent();
    return new Family(this, name, await this.metrics());
  }

  /** Every log line at error level or above so far. */
  errors(): Record<string, unknown>[] {
    return this.server.lines.flatMap((l) => {
      try {
        const j = JSON.parse(l) as Record<string, unknown>;
        return j.level === "error" || j.level === "fatal" ? [j] : [];
      } catch {
        return [];
      }
    });
  }

  async close(): Promise<void> {
    await killLeftovers();
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A problem+json refusal: the status and content type match, and the body says the same status. */
export function expectProblem(r: { status: number; headers: Headers; body: any; text: string }, what: string): void {
  expect(r.headers.get("content-type"), `${what}: ${r.status} ${r.text.slice(0, 200)}`).toStartWith(
    "application/problem+json",
  );
  expect(typeof r.body === "object" && r.body !== null ? r.body.status : null, `${what}: problem status`).toBe(
    r.status,
  );
}

/** Time a suite and print it when it ends. */
export function suiteTimer(suite: string): () => void {
  const t0 = performance.now();
  return () => console.log(`[hostile] ${suite}: total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** What the appliance wrote of its mail, read from its database file (read-only) while it runs. */
export function mailRows(dataDir: string) {
  const db = new Database(join(dataDir, "agentowl.db"), { readonly: true });
  return {
    row: (id: string) =>
      db.query("SELECT state, events, error FROM mail_messages WHERE id = ?").get(id) as {
        state: string;
        events: string | null;
        error: string | null;
      } | null,
    /** mail.process jobs not done: waiting, running or dead-lettered. */
    unfinishedJobs: () =>
      (
        db.query("SELECT count(*) AS n FROM jobs WHERE kind = 'mail.process' AND state <> 'done'").get() as {
          n: number;
        }
      ).n,
    close: () => db.close(),
  };
}
