/**
 * `npm run soak [-- --minutes N] [--load F]` (not in CI; docs/performance.md#soak): mixed SMTP,
 * webhook and delivery traffic at a steady rate for N minutes (default 10), then latency
 * percentiles and the appliance's RSS per minute, and whether RSS grew more than 10% after the
 * first two minutes.
 *
 * The rate is a fraction F (default 0.5) of the measured capacity, shared equally by the two
 * kinds: SMTP at F / 2 of the sustained mail capacity (messages accepted in the smtp section's
 * burst over the burst plus its backlog's drain: the rate at which mail becomes stored events),
 * webhooks at F / 2 of the dispatch capacity (ingress to delivered). Both are read from
 * bench/results/latest.json; without it they are measured first on the soak's appliance.
 *
 * Every message and webhook becomes an event routed to one endpoint, a receiver in this process,
 * so every item is also a delivery. Traffic is open-loop (sent on a schedule, not when the last
 * answer came), and latency counts from the scheduled time, so a stall shows as latency rather
 * than as fewer requests. The appliance runs as `bun src/main.ts serve` in its own process.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startDnsServer } from "../test/helpers/dns-server.ts";
import { quantile, startAppliance } from "./common.ts";
import { procMeter, rssMiB } from "./measure.ts";
import { formatForRepo, isNoisy, loadAverage, machineInfo, num, type Report } from "./report.ts";
import { SmtpClient } from "./smtp.ts";

const ROOT = join(import.meta.dir, "..");
const SMTP_CONNECTIONS = 50;
const stamp = () => performance.timeOrigin + performance.now();

function parseArgs(argv: string[]): { minutes: number; load: number } {
  let minutes = 10;
  let load = 0.5;
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i]!.split("=", 2);
    const v = () => Number(inline ?? argv[++i]);
    if (k === "--minutes") minutes = v();
    else if (k === "--load") load = v();
    else throw new Error(`unknown option ${argv[i]} (usage: npm run soak -- [--minutes N] [--load F])`);
  }
  if (!(minutes > 0) || !(load > 0)) throw new Error("--minutes and --load take positive numbers");
  return { minutes, load };
}

/** Capacity from the latest report: sustained mail to stored events, webhooks to delivered. */
function capacityFromReport(): { smtp: number; webhooks: number; from: string } | null {
  const file = join(ROOT, "bench/results/latest.json");
  if (!existsSync(file)) return null;
  const r = JSON.parse(readFileSync(file, "utf8")) as Report;
  const figs = (s: string) => r.sections.find((x) => x.section === s)?.figures ?? [];
  const accept = figs("smtp").find((f) => f.name.startsWith("agentowl durable accept, reuse"));
  const backlog = figs("smtp").find((f) => f.name.startsWith("processing backlog"));
  // The smtp section's burst (BENCH_SMTP_SECONDS, 8 s unless set).
  const burst = Number(process.env.BENCH_SMTP_SECONDS ?? 8);
  const dispatch = figs("dispatch").find((f) => f.name.startsWith("agentowl: ingress → delivered"));
  if (!accept || !backlog || !burst || !dispatch) return null;
  return {
    smtp: (accept.value * burst) / (burst + backlog.value),
    webhooks: dispatch.value,
    from: `bench/results/latest.json of ${r.startedAt}`,
  };
}

/** The receiver: stamps each arrival by key (event id, or the mail's subject). */
function receiver() {
  const waiting = new Map<string, (at: number) => void>();
  const early = new Map<string, number>();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const at = stamp();
      const body = (await req.json()) as { id: string; data?: { subject?: string } };
      const key = body.data?.subject?.startsWith("soak ") ? body.data.subject : body.id;
      const w = waiting.get(key);
      if (w) {
        waiting.delete(key);
        w(at);
      } else early.set(key, at);
      return new Response("ok");
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/hook`,
    arrival: (key: string) =>
      new Promise<number>((resolve) => {
        const at = early.get(key);
        if (at !== undefined) {
          early.delete(key);
          resolve(at);
        } else waiting.set(key, resolve);
      }),
    pending: () => waiting.size,
    /** The keys still awaited (mail subjects, event ids). */
    awaited: () => waiting.keys(),
    stop: () => server.stop(true),
  };
}

/** Latencies of one minute, by what was measured. */
class Minute {
  smtpAccept: number[] = [];
  smtpDelivered: number[] = [];
  hookAccept: number[] = [];
  hookDelivered: number[] = [];
  errors = 0;
}

const BODY = JSON.stringify({ type: "ticket.created", ticket: { id: 4711, title: "Printer out of toner" } });

export async function soak(minutes: number, loadFraction: number): Promise<void> {
  const startedAt = new Date();
  const loadBefore = loadAverage();
  const dns = await startDnsServer({});
  const rx = receiver();
  const app = await startAppliance("soak", {
    AGENTOWL_SMTP_GREETING_DELAY: "0ms",
    AGENTOWL_DNS_SERVERS: dns.servers.join(","),
  });
  const SECRET = `whsec_${Buffer.from("bench-soak-signing-secret-32-byte").toString("base64")}`;
  try {
    await app.api("POST", "/v1/tenants", { name: "beta" });
    await app.api("PUT", "/v1/tenants/beta/secrets/receiver", { value: SECRET });
    await app.api("POST", "/v1/tenants/beta/endpoints", {
      name: "receiver",
      url: rx.url,
      signing_secret: "vault:beta/receiver",
      max_in_flight: 100,
    });
    await app.api("POST", "/v1/tenants/beta/bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } });
    await app.api("POST", "/v1/tenants/beta/bindings", { name: "mail", type: "email", addresses: ["hello"] });
    await app.api("POST", "/v1/tenants/beta/routes", { name: "all", default: true, to: ["receiver"] });
    const ingress = `${app.url}/ingress/webhook/beta/hooks`;

    // RSS when the 100,000th event has been delivered (target: < 150 MB).
    let delivered = 0;
    let rssAt100k: number | undefined;
    const passed = () => {
      if (++delivered === 100_000) rssAt100k = rssMiB(app.proc.pid);
    };
    // Up to SMTP_CONNECTIONS sessions, each reused; a message due while all are busy waits for one.
    let n = 0;
    const pool: SmtpClient[] = [];
    const idle: SmtpClient[] = [];
    const waiters: ((c: SmtpClient) => void)[] = [];
    let opened = 0;
    // A session the appliance closed (smtp_idle_timeout, 60 s: the pool hands out the most recently
    // used first, so the rest may sit idle that long) is dropped and replaced, never handed out: a
    // message sent on it would wait for an answer forever.
    let replaced = 0;
    const drop = (c: SmtpClient) => {
      opened--;
      replaced++;
      pool.splice(pool.indexOf(c), 1);
    };
    const release = (c: SmtpClient) => {
      if (c.closed) {
        drop(c);
        const w = waiters.shift();
        if (w) acquire().then(w, () => waiters.unshift(w));
        return;
      }
      const w = waiters.shift();
      if (w) w(c);
      else idle.push(c);
    };
    const acquire = async (): Promise<SmtpClient> => {
      for (let c = idle.pop(); c; c = idle.pop()) {
        if (!c.closed) return c;
        drop(c);
      }
      if (opened < SMTP_CONNECTIONS) {
        opened++;
        const fresh = await SmtpClient.open(app.smtpPort);
        pool.push(fresh);
        return fresh;
      }
      return new Promise((r) => waiters.push(r));
    };
    const smtpOne = async (scheduled: number, m: Minute) => {
      const subject = `soak ${n++}`;
      const arrived = rx.arrival(subject);
      try {
        // A session the appliance closed as this message went out (its idle timeout, met at the
        // same moment) took none of it: the message goes again on another one, as an MTA does.
        for (let tries = 1; ; tries++) {
          const c = await acquire();
          try {
            await c.send(n, { subject });
            break;
          } catch (e) {
            if (!c.closed || tries === 2) throw e;
          } finally {
            release(c);
          }
        }
        m.smtpAccept.push(stamp() - scheduled);
        m.smtpDelivered.push((await arrived) - scheduled);
        passed();
      } catch {
        m.errors++;
      }
    };
    const hookOne = async (scheduled: number, m: Minute) => {
      try {
        const r = await fetch(ingress, { method: "POST", headers: { "content-type": "application/json" }, body: BODY });
        if (r.status !== 202) throw new Error(String(r.status));
        m.hookAccept.push(stamp() - scheduled);
        const { id } = (await r.json()) as { id: string };
        m.hookDelivered.push((await rx.arrival(id)) - scheduled);
        passed();
      } catch {
        m.errors++;
      }
    };

    let cap = capacityFromReport();
    if (!cap) {
      console.log("no bench/results/latest.json with smtp and dispatch figures: measuring capacity first (2 × 8 s)");
      cap = await measureCapacity(smtpOne, hookOne);
    }
    const smtpRate = (cap.smtp * loadFraction) / 2;
    const hookRate = (cap.webhooks * loadFraction) / 2;
    console.log(
      `capacity (${cap.from}): mail ${num(cap.smtp)}/s sustained, webhooks ${num(cap.webhooks)}/s delivered; ` +
        `soak at ${loadFraction} of it shared by both: SMTP ${num(smtpRate)}/s + webhooks ${num(hookRate)}/s, ` +
        `${minutes} min`,
    );

    const meter = procMeter(app.proc.pid);
    const rows: MinuteRow[] = [];
    const inflight = new Set<Promise<void>>();
    const track = (p: Promise<void>) => {
      inflight.add(p);
      p.finally(() => inflight.delete(p));
    };
    const t0 = stamp();
    const total = Math.round(minutes * 60_000);
    let sentSmtp = 0;
    let sentHooks = 0;
    let minute = new Minute();
    let minuteStart = t0;
    let cpu0 = meter.cpuMs() ?? 0;
    while (stamp() - t0 < total) {
      const now = stamp();
      const elapsed = now - t0;
      // Open loop: whatever the schedule says is due by now is sent now, stamped with when it was due.
      while (sentSmtp < (elapsed / 1000) * smtpRate) track(smtpOne(t0 + (sentSmtp++ * 1000) / smtpRate, minute));
      while (sentHooks < (elapsed / 1000) * hookRate) track(hookOne(t0 + (sentHooks++ * 1000) / hookRate, minute));
      if (now - minuteStart >= 60_000) {
        const cpu = meter.cpuMs() ?? 0;
        rows.push(await row(rows.length + 1, minute, now - minuteStart, cpu - cpu0, app));
        printRow(rows.at(-1)!);
        cpu0 = cpu;
        minute = new Minute();
        minuteStart = now;
      }
      await Bun.sleep(5);
    }
    console.log(`sending stopped; waiting for ${inflight.size} items still in flight (30 s at most)`);
    const drained = await Promise.race([Promise.all(inflight).then(() => true), Bun.sleep(30_000).then(() => false)]);
    // The last, partial minute, with the wait for its items, unless it is too short to say anything.
    if (stamp() - minuteStart > 10_000 || !rows.length) {
      rows.push(await row(rows.length + 1, minute, stamp() - minuteStart, (meter.cpuMs() ?? 0) - cpu0, app));
      printRow(rows.at(-1)!);
    }
    for (const c of pool) c.close();

    const baseline = rows[1]?.rssMiB;
    const last = rows.at(-1)!.rssMiB;
    const growth = baseline && rows.length > 2 ? (last - baseline) / baseline : undefined;
    const summary =
      growth === undefined
        ? "RSS growth after the first two minutes: not measured (the soak was shorter than 3 minutes)"
        : `RSS after minute 2: ${num(baseline)} MiB, at the end: ${num(last)} MiB: ` +
          `${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(1)}%, ` +
          `${growth > 0.1 ? "GREW MORE THAN 10%" : "did not grow more than 10%"}`;
    const at100k =
      rssAt100k === undefined
        ? `${delivered.toLocaleString("en-US")} events delivered (fewer than 100,000: no RSS at 100,000)`
        : `RSS when the 100,000th event was delivered: ${num((rssAt100k * 2 ** 20) / 1e6)} MB ` +
          `(target < 150 MB: ${(rssAt100k * 2 ** 20) / 1e6 < 150 ? "met" : "not met"}); ` +
          `${delivered.toLocaleString("en-US")} events delivered in all`;
    console.log(summary);
    console.log(at100k);
    if (!drained)
      console.log(
        `${inflight.size} items were not delivered 30 s after sending stopped; awaited at the receiver: ` +
          `${[...rx.awaited()].slice(0, 20).join(", ") || "none"}`,
      );
    if (replaced) console.log(`${replaced} idle SMTP sessions the appliance closed (smtp_idle_timeout) were replaced`);

    const machine = machineInfo(loadBefore, loadAverage());
    const md = renderSoak({
      startedAt: startedAt.toISOString(),
      minutes,
      loadFraction,
      capacity: cap,
      smtpRate,
      hookRate,
      rows,
      summary:
        `${summary}. ${at100k}` +
        (replaced ? `; ${replaced} idle SMTP sessions the appliance closed (smtp_idle_timeout) were replaced` : ""),
      undelivered: drained ? 0 : inflight.size,
      machineLine:
        `${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Bun ${machine.bun}; load before ` +
        `${machine.loadBefore.join(" ")}, after ${machine.loadAfter.join(" ")}${isNoisy(machine) ? " (noisy: over 0.5 per core before start)" : ""}`,
    });
    const dir = join(ROOT, "bench/results");
    mkdirSync(dir, { recursive: true });
    const name = `soak-${startedAt.toISOString().replace(/[:.]/g, "-")}`;
    writeFileSync(join(dir, `${name}.md`), md);
    writeFileSync(join(dir, "soak-latest.md"), md);
    formatForRepo([join(dir, "soak-latest.md")]);
    writeFileSync(
      join(dir, `${name}.json`),
      `${JSON.stringify({ startedAt, minutes, loadFraction, capacity: cap, smtpRate, hookRate, rows, growth, delivered, rssAt100k, machine }, null, 2)}\n`,
    );
    console.log(`written: bench/results/${name}.{md,json}, bench/results/soak-latest.md`);
  } finally {
    await app.stop();
    rx.stop();
    await dns.close();
  }
}

interface MinuteRow {
  minute: number;
  seconds: number;
  smtpPerSec: number;
  hooksPerSec: number;
  smtpAccept: { p50: number; p99: number };
  smtpDelivered: { p50: number; p99: number };
  hookAccept: { p50: number; p99: number };
  hookDelivered: { p50: number; p99: number };
  errors: number;
  rssMiB: number;
  cpuPercent: number;
  backlog: number;
  /** The machine's 1-minute load average at the minute's end. */
  load: number;
}

const pct = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
};

async function row(
  minute: number,
  m: Minute,
  ms: number,
  cpuMs: number,
  app: { url: string; proc: { pid: number } },
): Promise<MinuteRow> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const backlog = ["available", "leased", "scheduled"].reduce(
    (n, st) => n + Number(new RegExp(`agentowl_queue_jobs\\{state="${st}"\\} (\\d+)`).exec(text)?.[1] ?? 0),
    0,
  );
  return {
    minute,
    seconds: ms / 1000,
    smtpPerSec: (m.smtpAccept.length * 1000) / ms,
    hooksPerSec: (m.hookAccept.length * 1000) / ms,
    smtpAccept: pct(m.smtpAccept),
    smtpDelivered: pct(m.smtpDelivered),
    hookAccept: pct(m.hookAccept),
    hookDelivered: pct(m.hookDelivered),
    errors: m.errors,
    rssMiB: rssMiB(app.proc.pid) ?? Number.NaN,
    cpuPercent: (100 * cpuMs) / ms,
    backlog,
    load: loadAverage()[0]!,
  };
}

const HEADER =
  "| minute | SMTP /s | webhooks /s | SMTP 250 p50 / p99 ms | SMTP delivered p50 / p99 ms | webhook 202 p50 / p99 ms | " +
  "webhook delivered p50 / p99 ms | errors | backlog | CPU % | RSS MiB | load |";
const line = (r: MinuteRow) =>
  `| ${r.minute}${Math.abs(r.seconds - 60) > 1 ? ` (${num(r.seconds)} s)` : ""} | ${num(r.smtpPerSec)} | ${num(r.hooksPerSec)} | ${num(r.smtpAccept.p50)} / ${num(r.smtpAccept.p99)} | ` +
  `${num(r.smtpDelivered.p50)} / ${num(r.smtpDelivered.p99)} | ${num(r.hookAccept.p50)} / ${num(r.hookAccept.p99)} | ` +
  `${num(r.hookDelivered.p50)} / ${num(r.hookDelivered.p99)} | ${r.errors} | ${r.backlog} | ${num(r.cpuPercent)} | ${num(r.rssMiB)} | ${num(r.load)} |`;

function printRow(r: MinuteRow): void {
  if (r.minute === 1) console.log(HEADER);
  console.log(line(r));
}

function renderSoak(s: {
  startedAt: string;
  minutes: number;
  loadFraction: number;
  capacity: { smtp: number; webhooks: number; from: string };
  smtpRate: number;
  hookRate: number;
  rows: MinuteRow[];
  summary: string;
  undelivered: number;
  machineLine: string;
}): string {
  return [
    `# Soak of ${s.startedAt}, ${s.minutes} min`,
    "",
    `Machine: ${s.machineLine}.`,
    "",
    `Capacity (${s.capacity.from}): mail ${num(s.capacity.smtp)}/s sustained, webhooks ${num(s.capacity.webhooks)}/s ` +
      `delivered. Load: ${s.loadFraction} of it, shared by both: SMTP ${num(s.smtpRate)}/s and webhooks ` +
      `${num(s.hookRate)}/s, every item delivered to a receiver. Latencies from the scheduled send.`,
    "",
    HEADER,
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...s.rows.map(line),
    "",
    `${s.summary}.${s.undelivered ? ` ${s.undelivered} items not delivered 30 s after sending stopped.` : ""}`,
    "",
  ].join("\n");
}

/** Without a report: 8 s of SMTP at full intake (then its drain) and 8 s of webhooks, closed-loop. */
async function measureCapacity(
  smtpOne: (scheduled: number, m: Minute) => Promise<void>,
  hookOne: (scheduled: number, m: Minute) => Promise<void>,
): Promise<{ smtp: number; webhooks: number; from: string }> {
  const closed = async (one: typeof smtpOne, loops: number, drainedAfter: (m: Minute) => number) => {
    const m = new Minute();
    const t0 = stamp();
    await Promise.all(
      Array.from({ length: loops }, async () => {
        while (stamp() - t0 < 8000) await one(stamp(), m);
      }),
    );
    return drainedAfter(m) / ((stamp() - t0) / 1000);
  };
  // Each loop waits for its delivery, so the rate counts items through to the receiver.
  const smtp = await closed(smtpOne, 20, (m) => m.smtpDelivered.length);
  const webhooks = await closed(hookOne, 50, (m) => m.hookDelivered.length);
  return { smtp, webhooks, from: "measured on the soak's appliance just before" };
}

if (import.meta.main) {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`soak: ${(e as Error).message}`);
    process.exit(2);
  }
  await soak(args.minutes, args.load);
  process.exit(0);
}
