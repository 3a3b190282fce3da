/**
 * `npm run bench -- smtp`: messages per second through the SMTP listener (accept, spool fsync,
 * group commit, 250) at 50 concurrent sessions, with and without connection reuse, beside
 * smtp-server on its own (accepts and discards) and Postfix's smtp-sink (the same, in C), driven
 * by the same client in the same run. Neither reference touches the disk.
 *
 * The appliance runs as `bun src/main.ts serve` in its own process; the client is this process.
 * The greeting delay (smtp_greeting_delay, default 100 ms) is measured both at its default and at
 * 0 ms, since it bounds one-message-per-connection throughput at about sessions / delay.
 */
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";
import { startDnsServer } from "../test/helpers/dns-server.ts";

import { freePort, startAppliance } from "./common.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const SESSIONS = Number(process.env.BENCH_SMTP_SESSIONS ?? 50);
const SECONDS = Number(process.env.BENCH_SMTP_SECONDS ?? 8);
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
  return { perSec: Math.round((latencies.length * 1000) / ms), p50: q(0.5), p99: q(0.99) };
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
): Promise<{ port: number; drain: () => Promise<number>; stop: () => Promise<void> }> {
  const app = await startAppliance("smtp", {
    AGENTOWL_SMTP_GREETING_DELAY: greetingDelay,
    AGENTOWL_DNS_SERVERS: dnsServers,
  });
  await app.api("POST", "/v1/tenants", { name: "beta" });
  await app.api("POST", "/v1/tenants/beta/bindings", { name: "mail", type: "email", addresses: ["hello"] });
  await waitPort(app.smtpPort, app.proc);
  return {
    port: app.smtpPort,
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

export async function benchSmtp(): Promise<void> {
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
  } else console.log("smtp-sink not found (apt-get install postfix): no reference");
  const bare = await bareSmtpServer();
  const lib = { reuse: await load(bare.port, true), fresh: await load(bare.port, false) };
  await bare.stop();
  console.log(`smtp-server alone (100 ms greeting, no disk), reuse:        ${fmt(lib.reuse)}`);
  console.log(`smtp-server alone (100 ms greeting, no disk), per message:  ${fmt(lib.fresh)}`);
  for (const delay of ["0ms", "100ms"]) {
    const a = await agentowl(delay);
    try {
      const reuse = await load(a.port, true);
      const backlog = await a.drain();
      const fresh = await load(a.port, false);
      const backlog2 = await a.drain();
      const ratio = (r: Result, k: "reuse" | "fresh") =>
        `  = ${(r.perSec / lib[k].perSec).toFixed(2)}x smtp-server alone${ref[k] ? `, ${(r.perSec / ref[k]!.perSec).toFixed(2)}x smtp-sink` : ""}`;
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
}
