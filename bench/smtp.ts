/**
 * `npm run bench -- smtp`: messages per second through the SMTP listener (accept, spool fsync,
 * group commit, 250) at 50 concurrent sessions, with and without connection reuse, beside three
 * references driven by the same client in the same run: Postfix's durable accept (Debian's
 * postfix as a private instance: its queue file fsynced before the 250, delivered to the discard
 * transport), which is the yardstick of the targets, and two ceilings that never touch the disk:
 * smtp-server on its own and Postfix's smtp-sink. The floor (bench/peers/smtp-durable-floor.ts) is
 * the least a durable accept can do on this stack: smtp-server, a group fdatasync, a group commit;
 * the floor with processing adds what the appliance does meanwhile and the target includes (each
 * message parsed, its sender checked, its event committed), with the appliance's own parse and
 * sender auth and nothing else of it.
 *
 * The appliance runs as `bun src/main.ts serve` in its own process; the client is this process.
 * The accept runs are at smtp_greeting_delay 0 ms, as Postfix greets without a pause; the default
 * 100 ms, which bounds one-message-per-connection throughput at about sessions / delay, is
 * measured too. After the 8 s burst with connection reuse, the bench times how long the
 * processing backlog (parse, sender auth, event) takes to drain: target under 2 s.
 *
 * BENCH_SMTP_RUNS=5 repeats the Postfix and appliance runs and prints the median of the ratios;
 * BENCH_SMTP_QUICK=1 leaves out the no-disk ceilings and the 100 ms greeting. Every measured run
 * follows BENCH_SMTP_WARMUP (2) seconds of the same load, not measured, for every contender alike;
 * every message of the section is new bytes (no event is a repeat of an earlier one).
 */
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { connect, type Socket } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { type Subprocess, spawn, spawnSync } from "bun";
import { DKIM_KEY_RECORD, signedMessage } from "../test/helpers/dkim.ts";
import { startDnsServer } from "../test/helpers/dns-server.ts";

import { cpuSeconds, freePort, quantile, startAppliance } from "./common.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const SESSIONS = Number(process.env.BENCH_SMTP_SESSIONS ?? 50);
const SECONDS = Number(process.env.BENCH_SMTP_SECONDS ?? 8);
const WARMUP_SECONDS = Number(process.env.BENCH_SMTP_WARMUP ?? 2);
const MESSAGE =
  `From: bench@example.com\r\nTo: hello@beta.agentowl.lan\r\nSubject: benchmark\r\n` +
  `Message-ID: <%ID%@bench>\r\n\r\n${"The quick brown fox jumps over the lazy dog. ".repeat(40)}\r\n.\r\n`;

/** A minimal pipelining-free SMTP client: reads one reply per command. */
export class SmtpClient {
  private buf = "";
  private wait: ((line: string) => void) | null = null;
  /** The server closed the connection (an idle one after smtp_idle_timeout, say): it takes no more mail. */
  closed = false;
  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.setNoDelay(true);
    // A connection the server closes answers whoever waits with a line that is no 250.
    socket.on("close", () => {
      this.closed = true;
      this.wait?.("closed by the server\r\n");
    });
    socket.on("data", (d: string) => {
      this.buf += d;
      for (;;) {
        const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buf);
        if (!m) return;
        this.buf = this.buf.slice(m.index + m[0].length);
        const w = this.wait;
        this.wait = null;
        w?.(m[0]);
      }
    });
  }
  static async open(port: number): Promise<SmtpClient> {
    const s = connect({ host: "127.0.0.1", port });
    await new Promise((r, j) => s.once("connect", r).once("error", j));
    const c = new SmtpClient(s);
    await c.line();
    await c.cmd("EHLO bench.example.com");
    return c;
  }
  private line(): Promise<string> {
    // After the close no line comes: a command sent then is answered as the close was.
    if (this.closed) return Promise.resolve("closed by the server\r\n");
    return new Promise((r) => (this.wait = r));
  }
  cmd(c: string): Promise<string> {
    const p = this.line();
    this.socket.write(`${c}\r\n`);
    return p;
  }
  /** One message; its DATA-end (epoch ms, when the final dot was written) and the 250's latency. */
  async send(
    id: number,
    opts: { to?: string; subject?: string; message?: (id: number) => string } = {},
  ): Promise<{ ms: number; dataEnd: number }> {
    const to = opts.to ?? "hello@beta.agentowl.lan";
    await this.cmd("MAIL FROM:<bench@example.com>");
    await this.cmd(`RCPT TO:<${to}>`);
    await this.cmd("DATA");
    const end = this.line();
    const t0 = performance.now();
    this.socket.write(
      opts.message?.(id) ??
        MESSAGE.replace("%ID%", String(id))
          .replace("hello@beta.agentowl.lan", to)
          .replace("Subject: benchmark", `Subject: ${opts.subject ?? "benchmark"}`),
    );
    const dataEnd = performance.timeOrigin + performance.now();
    const reply = await end;
    if (!reply.startsWith("250")) throw new Error(`not accepted: ${reply}`);
    return { ms: performance.now() - t0, dataEnd };
  }
  close(): void {
    this.socket.end("QUIT\r\n");
  }
}

interface Result {
  perSec: number;
  p50: number;
  p99: number;
  /** Messages accepted. */
  n: number;
  /** CPU ms per 1,000 messages of the server's processes during the run, when measured. */
  cpuPer1k?: number;
}

const RUNS = Number(process.env.BENCH_SMTP_RUNS ?? 1);
const QUICK = process.env.BENCH_SMTP_QUICK === "1";

/** The next message's id: every message of the section is new bytes, never a repeat of an earlier one. */
let nextId = 0;

/**
 * SESSIONS loops for `seconds`: each sends on one connection (reuse) or opens one per message;
 * `message` makes each message's DATA (MESSAGE by default). The latencies of what was accepted.
 */
async function drive(port: number, reuse: boolean, seconds: number, message?: (id: number) => string) {
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: SESSIONS }, async () => {
      let c = reuse ? await SmtpClient.open(port) : null;
      while (performance.now() < deadline) {
        if (!reuse) c = await SmtpClient.open(port);
        latencies.push((await c!.send(nextId++, { message })).ms);
        if (!reuse) c!.close();
      }
      if (reuse) c!.close();
    }),
  );
  return latencies;
}

/**
 * The same load for WARMUP_SECONDS, not measured (as the HTTP and dispatch sections warm up every
 * contender: a server's first seconds are its JIT's, or its process pool's), then for SECONDS.
 */
async function load(
  port: number,
  reuse: boolean,
  cpu?: () => number | null,
  message?: (id: number) => string,
  warm = true,
): Promise<Result> {
  if (warm && WARMUP_SECONDS > 0) await drive(port, reuse, WARMUP_SECONDS, message);
  const cpu0 = cpu?.() ?? null;
  const t0 = performance.now();
  const latencies = await drive(port, reuse, SECONDS, message);
  const ms = performance.now() - t0;
  const cpu1 = cpu?.() ?? null;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => quantile(latencies, p);
  return {
    perSec: Math.round((latencies.length * 1000) / ms),
    p50: q(0.5),
    p99: q(0.99),
    n: latencies.length,
    cpuPer1k: cpu0 !== null && cpu1 !== null ? ((cpu1 - cpu0) * 1e6) / latencies.length : undefined,
  };
}

async function waitPort(port: number, proc: Subprocess | null): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (proc && proc.exitCode !== null) throw new Error(`process exited with ${proc.exitCode}`);
    const ok = await new Promise<boolean>((r) => {
      const s = connect({ host: "127.0.0.1", port });
      s.once("connect", () => (s.destroy(), r(true))).once("error", () => r(false));
    });
    if (ok) return;
    if (performance.now() - t0 > 20_000) throw new Error(`nothing listens on ${port}`);
    await Bun.sleep(50);
  }
}

/**
 * A LAN resolver stand-in: answers every sender-auth question with NXDOMAIN (cached like any
 * answer), except for the DKIM key of the signed messages.
 */
let dnsServers = "";

/**
 * The signed messages: one of about MESSAGE's size from alice@example.com, signed once by
 * example.com with RSA-2048 (test/helpers/dkim.ts), and per message an unsigned X-Bench-Id field
 * on top, so that each is new bytes (not a retransmission of the last) with the same signature.
 */
let signedTemplate = "";
const signed = (id: number) => `X-Bench-Id: ${id}\r\n${signedTemplate}\r\n.\r\n`;

interface Agentowl {
  port: number;
  pid: number;
  /** ms from now until the last mail.process job committed (every accepted message is an event). */
  drain: () => Promise<number>;
  /** Mean seconds per stage so far, from the listener's histograms. */
  stages: () => Promise<Record<string, number>>;
  /** The DKIM verdict of the last message's event. */
  lastDkim: () => string | undefined;
  stop: () => Promise<void>;
}

async function agentowl(greetingDelay: string): Promise<Agentowl> {
  const app = await startAppliance("smtp", {
    AGENTOWL_SMTP_GREETING_DELAY: greetingDelay,
    AGENTOWL_DNS_SERVERS: dnsServers,
    AGENTOWL_DNS_TIMEOUT: "500ms",
  });
  await app.api("POST", "/v1/tenants", { name: "beta" });
  await app.api("POST", "/v1/tenants/beta/bindings", { name: "mail", type: "email", addresses: ["hello"] });
  await waitPort(app.smtpPort, app.proc);
  const metrics = async () => await (await fetch(`${app.url}/metrics`)).text();
  return {
    port: app.smtpPort,
    pid: app.proc.pid,
    drain: async () => {
      const since = Date.now();
      // Polled gently (rendering /metrics costs the server CPU the backlog needs); the figure
      // itself is the commit time of the last message processed, from the database.
      for (;;) {
        const text = await metrics();
        const waiting = ["available", "leased", "scheduled"].reduce(
          (n, st) => n + Number(new RegExp(`agentowl_queue_jobs\\{state="${st}"\\} (\\d+)`).exec(text)?.[1] ?? 0),
          0,
        );
        if (waiting === 0) break;
        await Bun.sleep(250);
      }
      const db = new Database(join(app.dir, "agentowl.db"), { readonly: true });
      try {
        const last = db.query<{ at: number | null }, []>("SELECT max(processed_at) AS at FROM mail_messages").get()?.at;
        return Math.max(0, (last ?? since) - since);
      } finally {
        db.close();
      }
    },
    lastDkim: () => {
      const db = new Database(join(app.dir, "agentowl.db"), { readonly: true });
      try {
        const row = db
          .query<{ dkim: string | null }, []>(
            "SELECT json_extract(envelope, '$.data.auth.dkim') AS dkim FROM events ORDER BY received_at DESC, id DESC LIMIT 1",
          )
          .get();
        return row?.dkim ?? undefined;
      } finally {
        db.close();
      }
    },
    stages: async () => {
      const text = await metrics();
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/agentowl_smtp_stage_duration_seconds_sum\{stage="(\w+)"\} ([\d.e+-]+)/g)) {
        const count = Number(
          new RegExp(`agentowl_smtp_stage_duration_seconds_count\\{stage="${m[1]}"\\} (\\d+)`).exec(text)?.[1] ?? 0,
        );
        if (count) out[m[1]!] = Number(m[2]) / count;
      }
      return out;
    },
    stop: app.stop,
  };
}

async function bareSmtpServer(): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const proc = spawn([BUN, join(ROOT, "bench/peers/smtp-server-bare.ts"), String(port)], {
    stdout: "ignore",
    stderr: "inherit",
  });
  await waitPort(port, proc);
  return {
    port,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

async function smtpSink(): Promise<{ port: number; stop: () => Promise<void> } | null> {
  const port = await freePort();
  let proc: Subprocess;
  try {
    proc = spawn(["smtp-sink", "-u", "nobody", `127.0.0.1:${port}`, "1024"], { stdout: "ignore", stderr: "ignore" });
  } catch {
    return null;
  }
  try {
    await waitPort(port, proc);
  } catch {
    return null;
  }
  return {
    port,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/**
 * Postfix's durable accept: a private instance of Debian's postfix (its own config, queue and
 * data directories under the temp dir, on the disk the appliance's data dir is on), Debian's
 * defaults but for what a benchmark needs: an smtpd on 127.0.0.1 without chroot, no DNS or
 * reverse lookups, every message relayed to the discard transport. cleanup fsyncs the queue file
 * before smtpd answers 250. Needs root (postfix runs its daemons as the `postfix` user); null
 * when postfix is missing or does not start.
 *
 * Its directories get their modes set and postfix starts under umask 022, whatever this
 * process's umask is: a section that opened a data dir in this process (prepareDataDir sets
 * umask 077) left directories the `postfix` user could not enter, and every later round of a
 * `--runs 5` report ran without its reference.
 */
export async function postfixDurable(): Promise<{
  port: number;
  cpu: () => number | null;
  stop: () => Promise<void>;
} | null> {
  if (spawnSync(["which", "postfix"]).exitCode !== 0 || process.getuid?.() !== 0) return null;
  const dir = mkdtempSync(join(tmpdir(), "agentowl-bench-postfix-"));
  // The daemons run as the postfix user and must reach their queue below it.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const etc = join(dir, "etc");
  for (const d of ["etc", "queue", "data"]) {
    mkdirSync(join(dir, d));
    chmodSync(join(dir, d), 0o755);
  }
  const ids = spawnSync(["id", "-u", "postfix"]).stdout.toString().trim();
  if (ids) chownSync(join(dir, "data"), Number(ids), -1);
  writeFileSync(
    join(etc, "main.cf"),
    [
      "compatibility_level = 3.6",
      `queue_directory = ${join(dir, "queue")}`,
      `data_directory = ${join(dir, "data")}`,
      "inet_interfaces = 127.0.0.1",
      "inet_protocols = ipv4",
      "myhostname = postfix.bench",
      "mydestination =",
      "relay_domains = beta.agentowl.lan",
      "mynetworks = 127.0.0.0/8",
      "smtpd_relay_restrictions = permit_mynetworks, reject",
      "default_transport = discard:bench",
      "relay_transport = discard:bench",
      "local_transport = discard:bench",
      "alias_maps =",
      "alias_database =",
      "smtpd_peername_lookup = no",
      "smtp_dns_support_level = disabled",
      "",
    ].join("\n"),
  );
  // Debian's master.cf, the smtp listener moved to our port and every service out of the chroot.
  const master = readFileSync("/etc/postfix/master.cf", "utf8")
    .replace(/^smtp\s+inet.*$/m, `127.0.0.1:${port} inet n - n - - smtpd`)
    .replace(/^(\S+\s+(?:unix|inet|fifo|pass|unix-dgram)\s+[-yn]\s+[-yn]\s+)y/gm, "$1n");
  writeFileSync(join(etc, "master.cf"), master);
  for (const f of ["main.cf", "master.cf"]) chmodSync(join(etc, f), 0o644);
  const postfix = (cmd: string) => spawnSync(["postfix", "-c", etc, cmd], { stdout: "ignore", stderr: "ignore" });
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const umask = process.umask(0o022);
  let started: boolean;
  try {
    started = postfix("start").exitCode === 0;
  } finally {
    process.umask(umask);
  }
  if (!started) {
    cleanup();
    return null;
  }
  try {
    await waitPort(port, null);
  } catch {
    postfix("stop");
    cleanup();
    return null;
  }
  const masterPid = Number(readFileSync(join(dir, "queue/pid/master.pid"), "utf8").trim());
  return {
    port,
    // The master's own CPU, its reaped children's, and its live children's (smtpd, cleanup, qmgr, …).
    cpu: () => {
      try {
        const fields = (pid: number) => {
          const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
          return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        };
        const m = fields(masterPid);
        let ticks = Number(m[11]) + Number(m[12]) + Number(m[13]) + Number(m[14]);
        for (const name of readdirSync("/proc")) {
          if (!/^\d+$/.test(name)) continue;
          try {
            const f = fields(Number(name));
            if (Number(f[1]) === masterPid) ticks += Number(f[11]) + Number(f[12]);
          } catch {
            // gone meanwhile
          }
        }
        return ticks / 100;
      } catch {
        return null;
      }
    },
    stop: async () => {
      postfix("stop");
      cleanup();
    },
  };
}

const fmt = (r: Result) =>
  `${String(r.perSec).padStart(6)} msg/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms` +
  (r.cpuPer1k !== undefined ? `  ${Math.round(r.cpuPer1k)} CPU ms/1k` : "");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length
    ? s.length % 2
      ? s[(s.length - 1) / 2]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
    : Number.NaN;
};

export interface SmtpBenchRun {
  postfix: { reuse: Result; fresh: Result } | null;
  /** The least a durable accept does on this stack (reuse only). */
  floor: Result;
  /**
   * The least the whole pipeline does: the same accept, and each message parsed, its sender
   * checked and its event committed meanwhile, with the appliance's parse and sender auth (reuse
   * only); `drainMs` as the appliance's.
   */
  processingFloor: Result & { drainMs: number };
  agentowl: { reuse: Result; fresh: Result; signed: Result; drainMs: number; stages: Record<string, number> };
  ratio: { reuse: number | null; fresh: number | null };
}

export interface SmtpBenchResult {
  runs: SmtpBenchRun[];
  /** Medians over the runs; null when Postfix was missing. */
  median: { reuseVsPostfix: number | null; freshVsPostfix: number | null; drainMs: number };
  targets: { reuseVsPostfix: 3; freshVsPostfix: 1.5; drainMs: 2000 };
  load: { before: number[]; after: number[] };
}

/**
 * A floor of bench/peers/smtp-durable-floor.ts with connection reuse (smtp-server's greeting pause
 * is paid once a session): the accept alone, or with `dns` the accept and the processing, and
 * then how long its backlog took to drain after the load, read from its database.
 */
async function durableFloor(): Promise<Result>;
async function durableFloor(dns: string): Promise<Result & { drainMs: number }>;
async function durableFloor(dns?: string): Promise<Result & { drainMs?: number }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "agentowl-bench-floor-"));
  const proc = spawn([BUN, join(ROOT, "bench/peers/smtp-durable-floor.ts"), String(port), dir, ...(dns ? [dns] : [])], {
    stdout: "ignore",
    stderr: "inherit",
  });
  try {
    await waitPort(port, proc);
    const result = await load(port, true, () => cpuSeconds(proc.pid));
    if (!dns) return result;
    const end = Date.now();
    const db = new Database(join(dir, "floor.db"), { readonly: true });
    try {
      const left = db.query<{ n: number }, []>("SELECT count(*) AS n FROM mail WHERE processed_at IS NULL");
      while (left.get()!.n > 0) {
        if (Date.now() - end > 60_000) throw new Error("the processing floor's backlog did not drain in 60 s");
        await Bun.sleep(50);
      }
      const last = db.query<{ at: number }, []>("SELECT max(processed_at) AS at FROM mail").get()!.at;
      return { ...result, drainMs: Math.max(0, last - end) };
    } finally {
      db.close();
    }
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One round: Postfix's durable accept, the floor, then the appliance, with and without reuse, back to back. */
async function durableRound(round: number): Promise<SmtpBenchRun> {
  const pf = await postfixDurable();
  let postfix: SmtpBenchRun["postfix"] = null;
  if (pf) {
    try {
      postfix = { reuse: await load(pf.port, true, pf.cpu), fresh: await load(pf.port, false, pf.cpu) };
    } finally {
      await pf.stop();
    }
    console.log(`[${round}] postfix (queue fsync, discard), reuse:        ${fmt(postfix.reuse)}`);
    console.log(`[${round}] postfix (queue fsync, discard), per message:  ${fmt(postfix.fresh)}`);
  } else console.log(`[${round}] postfix not available (apt-get install postfix; needs root): no durable reference`);
  const floor = await durableFloor();
  console.log(`[${round}] floor (smtp-server + fdatasync + commit), reuse:  ${fmt(floor)}`);
  const processingFloor = await durableFloor(dnsServers);
  console.log(
    `[${round}] floor with processing (+ parse, sender auth, event), reuse:  ${fmt(processingFloor)}` +
      (postfix ? `  = ${(processingFloor.perSec / postfix.reuse.perSec).toFixed(2)}x postfix` : "") +
      `; drained ${(processingFloor.drainMs / 1000).toFixed(2)} s after`,
  );
  const a = await agentowl("0ms");
  try {
    const cpu = () => cpuSeconds(a.pid);
    // Warmed up and its backlog drained first: the CPU below is the burst's, accept and processing.
    if (WARMUP_SECONDS > 0) await drive(a.port, true, WARMUP_SECONDS);
    await a.drain();
    const cpu0 = cpu();
    const reuse = await load(a.port, true, cpu, undefined, false);
    const drainMs = await a.drain();
    const cpu1 = cpu();
    const fresh = await load(a.port, false, cpu);
    await a.drain();
    const stages = await a.stages();
    const signedReuse = await load(a.port, true, cpu, signed);
    await a.drain();
    const dkim = a.lastDkim();
    if (dkim !== "pass") throw new Error(`the signed messages' DKIM verdict is ${dkim}, not pass`);
    const ratio = {
      reuse: postfix ? reuse.perSec / postfix.reuse.perSec : null,
      fresh: postfix ? fresh.perSec / postfix.fresh.perSec : null,
    };
    const x = (r: number | null) => (r === null ? "" : `  = ${r.toFixed(2)}x postfix`);
    console.log(
      `[${round}] agentowl (fsync + commit), reuse:         ${fmt(reuse)}${x(ratio.reuse)}, ${(reuse.perSec / floor.perSec).toFixed(2)}x the floor, ` +
        `${(reuse.perSec / processingFloor.perSec).toFixed(2)}x the floor with processing`,
    );
    console.log(`[${round}] agentowl (fsync + commit), per message:   ${fmt(fresh)}${x(ratio.fresh)}`);
    console.log(
      `[${round}] agentowl (fsync + commit), reuse, DKIM-signed:  ${fmt(signedReuse)}` +
        x(postfix ? signedReuse.perSec / postfix.reuse.perSec : null),
    );
    const total = cpu0 !== null && cpu1 !== null ? ((cpu1 - cpu0) * 1e6) / reuse.n : Number.NaN;
    console.log(
      `[${round}]   backlog after the ${SECONDS} s burst drained in ${(drainMs / 1000).toFixed(2)} s (target < 2 s); ` +
        `${Math.round(total)} CPU ms/1k messages accepted and processed`,
    );
    console.log(
      `[${round}]   mean per stage (ms): ${Object.entries(stages)
        .map(([k, v]) => `${k} ${(v * 1000).toFixed(2)}`)
        .join(", ")}`,
    );
    return { postfix, floor, processingFloor, agentowl: { reuse, fresh, signed: signedReuse, drainMs, stages }, ratio };
  } finally {
    await a.stop();
  }
}

export async function benchSmtp(): Promise<SmtpBenchResult> {
  const before = loadavg();
  console.log(
    `${SESSIONS} sessions, ${SECONDS} s per run after ${WARMUP_SECONDS} s of warm-up, ${MESSAGE.length} byte messages; ` +
      "latency = end of DATA to 250; " +
      `load ${before.map((l) => l.toFixed(2)).join(" ")}`,
  );
  console.log(
    "agentowl also parses, authenticates and stores each message as an event meanwhile (the mail.process job, same process)",
  );
  const dns = await startDnsServer({ "s1._domainkey.example.com": { TXT: [DKIM_KEY_RECORD] } });
  dnsServers = dns.servers.join(",");
  signedTemplate = (await signedMessage(MESSAGE.length)).toString("latin1");
  try {
    if (!QUICK) {
      const sink = await smtpSink();
      if (sink) {
        const reuse = await load(sink.port, true);
        const fresh = await load(sink.port, false);
        await sink.stop();
        console.log(`smtp-sink (Postfix, no disk), reuse:        ${fmt(reuse)}`);
        console.log(`smtp-sink (Postfix, no disk), per message:  ${fmt(fresh)}`);
      } else console.log("smtp-sink not found (apt-get install postfix): no ceiling");
      const bare = await bareSmtpServer();
      const lib = { reuse: await load(bare.port, true), fresh: await load(bare.port, false) };
      await bare.stop();
      console.log(`smtp-server alone (100 ms greeting, no disk), reuse:        ${fmt(lib.reuse)}`);
      console.log(`smtp-server alone (100 ms greeting, no disk), per message:  ${fmt(lib.fresh)}`);
    }
    const runs: SmtpBenchRun[] = [];
    for (let i = 1; i <= RUNS; i++) runs.push(await durableRound(i));
    if (!QUICK) {
      const a = await agentowl("100ms");
      try {
        const fresh = await load(a.port, false);
        await a.drain();
        console.log(`agentowl, default 100 ms greeting, per message:  ${fmt(fresh)}`);
      } finally {
        await a.stop();
      }
    }
    const pick = (f: (r: SmtpBenchRun) => number | null) => {
      const xs = runs.map(f).filter((x): x is number => x !== null);
      return xs.length ? median(xs) : null;
    };
    const result: SmtpBenchResult = {
      runs,
      median: {
        reuseVsPostfix: pick((r) => r.ratio.reuse),
        freshVsPostfix: pick((r) => r.ratio.fresh),
        drainMs: median(runs.map((r) => r.agentowl.drainMs)),
      },
      targets: { reuseVsPostfix: 3, freshVsPostfix: 1.5, drainMs: 2000 },
      load: { before, after: loadavg() },
    };
    const met = (v: number | null, t: number, lower = false) =>
      v === null ? "no reference" : (lower ? v < t : v >= t) ? "met" : "not met";
    const { reuseVsPostfix: r, freshVsPostfix: f, drainMs: d } = result.median;
    console.log(
      `median of ${runs.length}: reuse ${r?.toFixed(2) ?? "-"}x postfix (target >= 3x: ${met(r, 3)}), ` +
        `per message ${f?.toFixed(2) ?? "-"}x (target >= 1.5x: ${met(f, 1.5)}), ` +
        `backlog drain ${(d / 1000).toFixed(2)} s (target < 2 s: ${met(d, 2000, true)}); ` +
        `load after ${result.load.after.map((l) => l.toFixed(2)).join(" ")}`,
    );
    return result;
  } finally {
    await dns.close();
  }
}
