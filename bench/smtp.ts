/**
 * `npm run bench -- smtp`: messages per second through the SMTP listener (accept, spool fsync,
 * group commit, 250) at 50 concurrent sessions, with and without connection reuse, beside
 * Postfix's durable accept (bench/peers/postfix.ts: queue file fsynced, discard transport), smtp-server on
 * its own (accepts and discards) and Postfix's smtp-sink (the same, in C), driven
 * by the same client in the same run. The last two do not touch the disk: they are ceilings.
 *
 * The appliance runs as `bun src/main.ts serve` in its own process; the client is this process.
 * The greeting delay (smtp_greeting_delay, default 100 ms) is measured both at its default and at
 * 0 ms, since it bounds one-message-per-connection throughput at about sessions / delay.
 */
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";
import { startDnsServer } from "../test/helpers/dns-server.ts";

import { freePort, startAppliance, withTempDir } from "./common.ts";
import { groupCpuMs, per1000, procMeter } from "./measure.ts";
import { startPostfix } from "./peers/postfix.ts";
import { figure, type Figure, type SectionResult, type Target } from "./report.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const SESSIONS = Number(process.env.BENCH_SMTP_SESSIONS ?? 50);
const SECONDS = Number(process.env.BENCH_SMTP_SECONDS ?? 8);
/** The greeting delays the appliance is measured at; the targets are read at 0 ms, as Postfix greets at once. */
const DELAYS = (process.env.BENCH_SMTP_DELAYS ?? "0ms,100ms").split(",").filter(Boolean);
const MESSAGE =
  `From: bench@example.com\r\nTo: hello@beta.agentowl.lan\r\nSubject: benchmark\r\n` +
  `Message-ID: <%ID%@bench>\r\n\r\n${"The quick brown fox jumps over the lazy dog. ".repeat(40)}\r\n.\r\n`;

/** A minimal pipelining-free SMTP client: reads one reply per command. */
export class SmtpClient {
  private buf = "";
  private wait: ((line: string) => void) | null = null;
  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.setNoDelay(true);
    // A connection the server closes answers whoever waits with a line that is no 250.
    socket.on("close", () => this.wait?.("closed by the server\r\n"));
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
    return new Promise((r) => (this.wait = r));
  }
  cmd(c: string): Promise<string> {
    const p = this.line();
    this.socket.write(`${c}\r\n`);
    return p;
  }
  /** One message; its DATA-end (epoch ms, when the final dot was written) and the 250's latency. */
  async send(id: number, opts: { to?: string; subject?: string } = {}): Promise<{ ms: number; dataEnd: number }> {
    const to = opts.to ?? "hello@beta.agentowl.lan";
    await this.cmd("MAIL FROM:<bench@example.com>");
    await this.cmd(`RCPT TO:<${to}>`);
    await this.cmd("DATA");
    const end = this.line();
    const t0 = performance.now();
    this.socket.write(
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
  n: number;
}

/** SESSIONS loops for SECONDS: each sends on one connection (reuse) or opens one per message. */
async function load(port: number, reuse: boolean): Promise<Result> {
  const latencies: number[] = [];
  let n = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: SESSIONS }, async () => {
      let c = reuse ? await SmtpClient.open(port) : null;
      while (performance.now() < deadline) {
        if (!reuse) c = await SmtpClient.open(port);
        latencies.push((await c!.send(n++)).ms);
        if (!reuse) c!.close();
      }
      if (reuse) c!.close();
    }),
  );
  const ms = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!;
  return { perSec: Math.round((latencies.length * 1000) / ms), p50: q(0.5), p99: q(0.99), n: latencies.length };
}

async function waitPort(port: number, proc: Subprocess): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`process exited with ${proc.exitCode}`);
    const ok = await new Promise<boolean>((r) => {
      const s = connect({ host: "127.0.0.1", port });
      s.once("connect", () => (s.destroy(), r(true))).once("error", () => r(false));
    });
    if (ok) return;
    if (performance.now() - t0 > 20_000) throw new Error(`nothing listens on ${port}`);
    await Bun.sleep(50);
  }
}

/** A LAN resolver stand-in: answers every sender-auth question (NXDOMAIN, cached like any answer). */
let dnsServers = "";

async function agentowl(
  greetingDelay: string,
): Promise<{ port: number; pid: number; drain: () => Promise<number>; stop: () => Promise<void> }> {
  const app = await startAppliance("smtp", {
    AGENTOWL_SMTP_GREETING_DELAY: greetingDelay,
    AGENTOWL_DNS_SERVERS: dnsServers,
  });
  await app.api("POST", "/v1/tenants", { name: "beta" });
  await app.api("POST", "/v1/tenants/beta/bindings", { name: "mail", type: "email", addresses: ["hello"] });
  await waitPort(app.smtpPort, app.proc);
  return {
    port: app.smtpPort,
    pid: app.proc.pid,
    /** Seconds until the mail.process backlog is empty (every accepted message is an event). */
    drain: async () => {
      const t0 = performance.now();
      for (;;) {
        const text = await (await fetch(`${app.url}/metrics`)).text();
        const waiting = ["available", "leased", "scheduled"].reduce(
          (n, st) => n + Number(new RegExp(`agentowl_queue_jobs\\{state="${st}"\\} (\\d+)`).exec(text)?.[1] ?? 0),
          0,
        );
        if (waiting === 0) return (performance.now() - t0) / 1000;
        await Bun.sleep(100);
      }
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

const fmt = (r: Result) =>
  `${String(r.perSec).padStart(6)} msg/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms`;

type Kind = "reuse" | "fresh";
const KIND_NAME: Record<Kind, string> = { reuse: "reuse", fresh: "one message per connection" };

/** Postfix's durable accept (queue file fsynced before 250, discard transport), or why it is missing. */
async function postfix(): Promise<{ reuse: Result; fresh: Result; cpu: Record<Kind, number | undefined> } | string> {
  return withTempDir("agentowl-bench-postfix-", async (dir) => {
    const pf = startPostfix(dir, await freePort());
    if (typeof pf === "string") return pf;
    try {
      await waitPortOnly(pf.port);
      const run = async (reuse: boolean) => {
        const c0 = groupCpuMs(pf.pids());
        const r = await load(pf.port, reuse);
        const c1 = groupCpuMs(pf.pids());
        return { r, cpu: c0 === undefined || c1 === undefined ? undefined : per1000(c1 - c0, r.n) };
      };
      const reuse = await run(true);
      const fresh = await run(false);
      return { reuse: reuse.r, fresh: fresh.r, cpu: { reuse: reuse.cpu, fresh: fresh.cpu } };
    } finally {
      await pf.stop();
    }
  });
}

async function waitPortOnly(port: number): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect({ host: "127.0.0.1", port });
      s.once("connect", () => (s.destroy(), r(true))).once("error", () => r(false));
    });
    if (ok) return;
    if (performance.now() - t0 > 20_000) throw new Error(`nothing listens on ${port}`);
    await Bun.sleep(50);
  }
}

export async function benchSmtp(): Promise<SectionResult> {
  const figures: Figure[] = [];
  const targets: Target[] = [];
  const notes: string[] = [];
  console.log(
    `${SESSIONS} sessions, ${SECONDS} s per run, ${MESSAGE.length} byte messages; latency = end of DATA to 250`,
  );
  console.log(
    "agentowl also parses, authenticates and stores each message as an event meanwhile (the mail.process job, same process)",
  );
  const dns = await startDnsServer({});
  dnsServers = dns.servers.join(",");
  const sink = await smtpSink();
  const ref: Record<string, Result> = {};
  if (sink) {
    ref.reuse = await load(sink.port, true);
    ref.fresh = await load(sink.port, false);
    await sink.stop();
    console.log(`smtp-sink (Postfix, no disk), reuse:        ${fmt(ref.reuse)}`);
    console.log(`smtp-sink (Postfix, no disk), per message:  ${fmt(ref.fresh)}`);
  } else {
    console.log("smtp-sink not found (apt-get install postfix): no reference");
    notes.push("smtp-sink not found (apt-get install postfix): no ceiling");
  }
  const pf = await postfix();
  if (typeof pf === "string") {
    console.log(`Postfix's durable accept: no reference: ${pf}`);
    notes.push(`Postfix's durable accept missing: ${pf}`);
  } else {
    console.log(`Postfix (queue fsync, discard), reuse:        ${fmt(pf.reuse)}`);
    console.log(`Postfix (queue fsync, discard), per message:  ${fmt(pf.fresh)}`);
    for (const k of ["reuse", "fresh"] as const)
      figures.push(
        figure(`Postfix durable accept, ${KIND_NAME[k]} (reference)`, pf[k].perSec, "msg/s", {
          p50: pf[k].p50,
          p99: pf[k].p99,
          cpuMsPer1000: pf.cpu[k],
          vs: ref[k] ? [{ role: "ceiling", name: "smtp-sink", value: ref[k]!.perSec }] : [],
        }),
      );
  }
  const bare = await bareSmtpServer();
  const lib = { reuse: await load(bare.port, true), fresh: await load(bare.port, false) };
  await bare.stop();
  console.log(`smtp-server alone (100 ms greeting, no disk), reuse:        ${fmt(lib.reuse)}`);
  console.log(`smtp-server alone (100 ms greeting, no disk), per message:  ${fmt(lib.fresh)}`);
  for (const delay of DELAYS) {
    const a = await agentowl(delay);
    try {
      const meter = procMeter(a.pid);
      const reuse = await load(a.port, true);
      const backlog = await a.drain();
      const reuseCpu = per1000(meter.cpuMs(), reuse.n);
      const meter2 = procMeter(a.pid);
      const fresh = await load(a.port, false);
      const backlog2 = await a.drain();
      const freshCpu = per1000(meter2.cpuMs(), fresh.n);
      for (const [k, r, cpu] of [
        ["reuse", reuse, reuseCpu],
        ["fresh", fresh, freshCpu],
      ] as const) {
        const vs: { role: "reference" | "ceiling"; name: string; value: number }[] = [];
        if (typeof pf !== "string") vs.push({ role: "reference", name: "Postfix durable accept", value: pf[k].perSec });
        vs.push({ role: "ceiling", name: "smtp-server alone", value: lib[k].perSec });
        if (ref[k]) vs.push({ role: "ceiling", name: "smtp-sink", value: ref[k]!.perSec });
        figures.push(
          figure(`agentowl durable accept, ${KIND_NAME[k]}, greeting ${delay}`, r.perSec, "msg/s", {
            p50: r.p50,
            p99: r.p99,
            cpuMsPer1000: cpu,
            peakRssMiB: meter.peakRssMiB(),
            vs,
          }),
        );
      }
      figures.push(
        figure(
          `processing backlog after ${SECONDS} s at full intake (reuse), greeting ${delay}`,
          backlog,
          "s to drain",
        ),
      );
      if (delay === "0ms") {
        if (typeof pf !== "string") {
          targets.push({
            name: "reuse / Postfix durable accept",
            measured: reuse.perSec / pf.reuse.perSec,
            op: ">=",
            bound: 3,
            unit: "x",
          });
          targets.push({
            name: "one message per connection / Postfix durable accept",
            measured: fresh.perSec / pf.fresh.perSec,
            op: ">=",
            bound: 1.5,
            unit: "x",
          });
        }
        targets.push({
          name: `backlog after ${SECONDS} s of SMTP at full intake drains`,
          measured: backlog,
          op: "<",
          bound: 2,
          unit: " s",
        });
      }
      const ratio = (r: Result, k: "reuse" | "fresh") =>
        `  = ${typeof pf === "string" ? "" : `${(r.perSec / pf[k].perSec).toFixed(2)}x Postfix, `}` +
        `${(r.perSec / lib[k].perSec).toFixed(2)}x smtp-server alone${ref[k] ? `, ${(r.perSec / ref[k]!.perSec).toFixed(2)}x smtp-sink` : ""}`;
      console.log(
        `agentowl (fsync + commit), greeting ${delay.padEnd(5)} reuse:        ${fmt(reuse)}${ratio(reuse, "reuse")}`,
      );
      console.log(
        `agentowl (fsync + commit), greeting ${delay.padEnd(5)} per message:  ${fmt(fresh)}${ratio(fresh, "fresh")}`,
      );
      console.log(
        `  processing backlog left after each run: ${backlog.toFixed(1)} s, ${backlog2.toFixed(1)} s to drain`,
      );
    } finally {
      await a.stop();
    }
  }
  await dns.close();
  if (SECONDS !== 8) notes.push(`${SECONDS} s runs: the backlog target is stated for an 8 s burst`);
  return { section: "smtp", figures, targets, notes };
}
