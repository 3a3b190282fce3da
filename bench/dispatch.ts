/**
 * `npm run bench -- dispatch` (docs/performance.md): events per second from a committed event to a 2xx at a
 * local receiver, with 50 events in flight, beside the same receiver's rate when the same load
 * generator POSTs the same signed envelopes to it directly, in the same run.
 *
 * The appliance runs as `bun src/main.ts serve` in its own process; the load generator and the
 * receiver (a Bun.serve answering 200 at once) share this one. An event is in flight from the
 * moment its webhook is sent to the ingress until the receiver has its delivery; each of the 50
 * loops sends the next when its last one arrives. The appliance's own overhead per event is the
 * time from the ingress's 202 (the event committed) to the delivery's arrival at the receiver:
 * routing, policy, the checkpoints, the audit entry, the secret lease, signing and the connect.
 * The receiver's own time is not in it (it answers after the arrival is stamped).
 *
 * Two more references, in the same loop: a bare relay (202, then a signed fetch to the receiver,
 * nothing stored) and the durable relay floor (the same with the two group commits per event
 * docs/state-machines.md cannot do without; bench/peers/relay.ts). They tell how much of the direct rate any
 * relay, and any durable one, can reach on this machine. Beside each: the CPU and the bytes written
 * per event of the process that relays, and the appliance's group commits, units of work and time
 * inside commits per event (on a loaded machine the rate moves with the load; these hardly do).
 *
 * Second figure: SMTP DATA-end (the client sends the final dot) to the delivery's arrival at the
 * receiver, p50 / p99, for mail from 10 sessions, 0 ms greeting delay.
 */
import { createHmac } from "node:crypto";
import { startDnsServer } from "../test/helpers/dns-server.ts";
import { bytesWritten, cpuSeconds, quantile, startAppliance, withPeer, withTempDir } from "./common.ts";
import { per1000, procMeter } from "./measure.ts";
import { figure, type SectionResult } from "./report.ts";
import { SmtpClient } from "./smtp.ts";

const IN_FLIGHT = Number(process.env.BENCH_DISPATCH_IN_FLIGHT ?? 50);
const SECONDS = Number(process.env.BENCH_DISPATCH_SECONDS ?? 10);
const MAILS = Number(process.env.BENCH_DISPATCH_MAILS ?? 1000);
const MAIL_SESSIONS = 10;
const SECRET = `whsec_${Buffer.from("bench-dispatch-signing-secret-32b").toString("base64")}`;
const KEY = Buffer.from(SECRET.slice("whsec_".length), "base64");
const BODY = JSON.stringify({
  type: "ticket.created",
  ticket: { id: 4711, title: "Printer on floor 2 is out of toner", priority: "low", tags: ["hardware", "printer"] },
});

/** Epoch milliseconds with sub-millisecond precision. */
const stamp = () => performance.timeOrigin + performance.now();

/** The receiver: stamps each arrival, tells whoever waits for that event, answers 200. */
export function receiver() {
  const waiting = new Map<string, (at: number) => void>();
  const early = new Map<string, number>();
  let arrivals = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const at = stamp();
      const body = (await req.json()) as { id: string; data?: { subject?: string } };
      arrivals++;
      // Matched by event id (webhooks) or by the subject the bench gave the mail.
      const key = body.data?.subject?.startsWith("bench ") ? body.data.subject : body.id;
      const w = waiting.get(key);
      if (w) {
        waiting.delete(key);
        w(at);
      } else early.set(key, at);
      return new Response("ok");
    },
  });
  const arrival = (key: string) =>
    new Promise<number>((resolve) => {
      const at = early.get(key);
      if (at !== undefined) {
        early.delete(key);
        resolve(at);
      } else waiting.set(key, resolve);
    });
  return {
    url: `http://127.0.0.1:${server.port}/hook`,
    arrival,
    arrivals: () => arrivals,
    stop: () => server.stop(true),
  };
}

export interface Figures {
  perSec: number;
  p50: number;
  p99: number;
  n: number;
  /** CPU microseconds per event of the process that relays (the relay, the appliance), when measured. */
  cpuUs?: number;
  /** Bytes that process wrote per event (the WAL, mostly), when measured. */
  bytes?: number;
}

/** `figures` with the CPU `pid` used and the bytes it wrote while `run` ran, per event. */
async function withCpu<T extends Figures>(pid: number, run: () => Promise<T>): Promise<T> {
  const [cpu0, bytes0] = [cpuSeconds(pid), bytesWritten(pid)];
  const figures = await run();
  const [cpu1, bytes1] = [cpuSeconds(pid), bytesWritten(pid)];
  return {
    ...figures,
    ...(cpu0 !== null && cpu1 !== null ? { cpuUs: ((cpu1 - cpu0) * 1e6) / figures.n } : {}),
    ...(bytes0 !== null && bytes1 !== null ? { bytes: (bytes1 - bytes0) / figures.n } : {}),
  };
}

/** The sum of a metric's samples in the appliance's /metrics (every label). */
async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

const cpu = (f: Figures) =>
  (f.cpuUs === undefined ? "" : `  ${f.cpuUs.toFixed(0)} µs CPU/event`) +
  (f.bytes === undefined ? "" : `, ${(f.bytes / 1024).toFixed(1)} KiB written/event`);

/** `inFlight` loops for SECONDS, each running `one` again as soon as it returns its latency. */
export async function closedLoop(
  one: (i: number) => Promise<number>,
  inFlight = IN_FLIGHT,
  seconds = SECONDS,
): Promise<Figures> {
  const latencies: number[] = [];
  let i = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) latencies.push(await one(i++));
    }),
  );
  const ms = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  return {
    perSec: Math.round((latencies.length * 1000) / ms),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    n: latencies.length,
  };
}

const fmt = (ms: number) => ms.toFixed(2);

export async function benchDispatch(): Promise<SectionResult> {
  console.log(`${IN_FLIGHT} events in flight, ${SECONDS} s each; receiver and load generator in this process`);
  const rx = receiver();

  // Reference: the load generator POSTs a signed envelope straight to the receiver.
  const envelope = JSON.stringify({ id: "evt_direct", type: "webhook.received", data: { json: JSON.parse(BODY) } });
  const direct = await closedLoop(async (i) => {
    const t0 = performance.now();
    const id = `msg_direct_${i}`;
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = `v1,${createHmac("sha256", KEY).update(`${id}.${ts}.${envelope}`).digest("base64")}`;
    const r = await fetch(rx.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": ts,
        "webhook-signature": sig,
      },
      body: envelope,
    });
    await r.arrayBuffer();
    return performance.now() - t0;
  });
  console.log(
    `receiver hit directly (signed POST, 200):   ${String(direct.perSec).padStart(6)} /s  p50 ${fmt(direct.p50)} ms  p99 ${fmt(direct.p99)} ms`,
  );

  // The ceilings of any relay on this machine, through the same loop: nothing stored, and the
  // least storage docs/state-machines.md allows (bench/peers/relay.ts).
  const relay = (args: string[]) =>
    withPeer("relay.ts", [rx.url, ...args], (url, proc) =>
      withCpu(proc.pid, () =>
        closedLoop(async () => {
          const t0 = performance.now();
          const r = await fetch(`${url}/ingress`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: BODY,
          });
          const { id } = (await r.json()) as { id: string };
          await rx.arrival(id);
          return performance.now() - t0;
        }),
      ),
    );
  const bare = await relay([]);
  const durable = await withTempDir("agentowl-bench-relay-", (dir) => relay([dir]));
  // The same floor writing agentowl's own tables, indexes and rows (bench/peers/relay.ts, `schema`):
  // what the appliance's storage alone costs, before any of its code.
  const onSchema = await withTempDir("agentowl-bench-relay-", (dir) => relay([dir, "schema"]));
  console.log(
    `bare relay (202, then a signed fetch):     ${String(bare.perSec).padStart(6)} /s ` +
      `= ${(bare.perSec / direct.perSec).toFixed(2)}x direct  p50 ${fmt(bare.p50)} ms  p99 ${fmt(bare.p99)} ms${cpu(bare)}`,
  );
  console.log(
    `durable relay floor (2 group commits):     ${String(durable.perSec).padStart(6)} /s ` +
      `= ${(durable.perSec / direct.perSec).toFixed(2)}x direct  p50 ${fmt(durable.p50)} ms  ` +
      `p99 ${fmt(durable.p99)} ms${cpu(durable)}`,
  );
  console.log(
    `  the same on agentowl's schema and rows:  ${String(onSchema.perSec).padStart(6)} /s ` +
      `= ${(onSchema.perSec / durable.perSec).toFixed(2)}x the floor  p50 ${fmt(onSchema.p50)} ms  ` +
      `p99 ${fmt(onSchema.p99)} ms${cpu(onSchema)}`,
  );

  const dns = await startDnsServer({});
  const app = await startAppliance("dispatch", {
    AGENTOWL_SMTP_GREETING_DELAY: "0ms",
    AGENTOWL_DNS_SERVERS: dns.servers.join(","),
  });
  const { api, url } = app;
  const smtp = app.smtpPort;
  try {
    await api("POST", "/v1/tenants", { name: "beta" });
    await api("PUT", "/v1/tenants/beta/secrets/receiver", { value: SECRET });
    await api("POST", "/v1/tenants/beta/endpoints", {
      name: "receiver",
      url: rx.url,
      signing_secret: "vault:beta/receiver",
      max_in_flight: 100,
    });
    await api("POST", "/v1/tenants/beta/bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } });
    await api("POST", "/v1/tenants/beta/bindings", { name: "mail", type: "email", addresses: ["hello"] });
    await api("POST", "/v1/tenants/beta/routes", { name: "all", default: true, to: ["receiver"] });
    // A policy to evaluate on every delivery, as a real tenant would have.
    await api("POST", "/v1/tenants/beta/policies", {
      name: "guard",
      rules: [
        {
          when: { target: "receiver", "json.type": "refund.requested" },
          effect: "require_approval",
          reason: "refunds need a person",
        },
      ],
    });

    const ingress = `${url}/ingress/webhook/beta/hooks`;
    const commits = async () => ({
      commits: await metric(url, "agentowl_commits_total{"),
      units: await metric(url, "agentowl_commit_batch_size_sum"),
      seconds: await metric(url, "agentowl_commit_duration_seconds_sum"),
    });
    const throughEvents = async (inFlight: number, seconds: number) => {
      const overheads: number[] = [];
      const c0 = await commits();
      const figures = await withCpu(app.proc.pid, () =>
        closedLoop(
          async () => {
            const t0 = performance.now();
            const r = await fetch(ingress, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: BODY,
            });
            if (r.status !== 202) throw new Error(`ingress answered ${r.status}`);
            const committed = stamp();
            const { id } = (await r.json()) as { id: string };
            overheads.push((await rx.arrival(id)) - committed);
            return performance.now() - t0;
          },
          inFlight,
          seconds,
        ),
      );
      const c1 = await commits();
      overheads.sort((a, b) => a - b);
      return {
        ...figures,
        overheadP50: quantile(overheads, 0.5),
        overheadP99: quantile(overheads, 0.99),
        commitsPerEvent: (c1.commits - c0.commits) / figures.n,
        unitsPerEvent: (c1.units - c0.units) / figures.n,
        commitUsPerEvent: ((c1.seconds - c0.seconds) * 1e6) / figures.n,
      };
    };
    // Warm-up: connections, caches, the JIT.
    await throughEvents(IN_FLIGHT, 2);
    const meter = procMeter(app.proc.pid);
    const ours = await throughEvents(IN_FLIGHT, SECONDS);
    const oursCpu = per1000(meter.cpuMs(), ours.n);
    console.log(
      `via agentowl (ingress, route, policy, audit, signed ` +
        `POST): ${String(ours.perSec).padStart(6)} /s ` +
        `= ${(ours.perSec / direct.perSec).toFixed(2)}x direct (target ≥ ` +
        `0.5x), ${(ours.perSec / durable.perSec).toFixed(2)}x the durable relay floor (target ≥ 0.6x)${cpu(ours)}` +
        (ours.cpuUs && durable.cpuUs ? ` = ${(ours.cpuUs / durable.cpuUs).toFixed(1)}x the floor's` : ""),
    );
    console.log(
      `  beside the floor on agentowl's schema and rows: ${(ours.perSec / onSchema.perSec).toFixed(2)}x its rate` +
        (ours.cpuUs && onSchema.cpuUs ? `, ${(ours.cpuUs / onSchema.cpuUs).toFixed(1)}x its CPU per event` : "") +
        ` (the rest of the distance to the floor is the schema's)`,
    );
    console.log(
      `  own overhead, committed event → arrival at the receiver: p50 ${fmt(ours.overheadP50)} ms  p99 ${fmt(ours.overheadP99)} ms (target p99 < 10 ms)`,
    );
    console.log(
      `  per event: ${ours.commitsPerEvent.toFixed(2)} group commits (the floor: 2, shared), ` +
        `${ours.unitsPerEvent.toFixed(2)} units of work, ${ours.commitUsPerEvent.toFixed(0)} µs inside commits (statements, COMMIT and its fsync)`,
    );
    console.log(
      `  ingress POST → arrival at the receiver:                 p50 ${fmt(ours.p50)} ms  p99 ${fmt(ours.p99)} ms`,
    );
    const one = await throughEvents(1, Math.max(2, SECONDS / 2));
    console.log(
      `  one event in flight: own overhead p50 ${fmt(one.overheadP50)} ms  p99 ${fmt(one.overheadP99)} ms (${one.perSec} /s)`,
    );

    // SMTP DATA-end → arrival at the receiver. The first mails after start also start the parse
    // workers (one per core, spawned on first use): shown apart, like the webhook warm-up.
    let n = 0;
    const mails = async (count: number) => {
      const latencies: number[] = [];
      const end = n + count;
      await Promise.all(
        Array.from({ length: MAIL_SESSIONS }, async () => {
          const c = await SmtpClient.open(smtp);
          while (n < end) {
            const subject = `bench ${n++}`;
            const arrived = rx.arrival(subject);
            const { dataEnd } = await c.send(n, { to: "hello@beta.agentowl.lan", subject });
            latencies.push((await arrived) - dataEnd);
          }
          c.close();
        }),
      );
      return latencies.sort((a, b) => a - b);
    };
    const first = await mails(MAIL_SESSIONS * 2);
    const latencies = await mails(MAILS);
    console.log(
      `SMTP DATA-end → delivery at the receiver (${MAILS} mails, ${MAIL_SESSIONS} sessions, one ` +
        `at a time each): p50 ${fmt(quantile(latencies, 0.5))} ms  ` +
        `p90 ${fmt(quantile(latencies, 0.9))} ms  p99 ${fmt(quantile(latencies, 0.99))} ms`,
    );
    console.log(
      `  the first ${first.length} mails after start (parse workers starting): p50 ${fmt(quantile(first, 0.5))} ms  max ${fmt(first.at(-1)!)} ms`,
    );
    const directRef = { role: "reference" as const, name: "receiver hit directly", value: direct.perSec };
    const floor = { role: "floor" as const, name: "durable relay", value: durable.perSec };
    const schemaFloor = { role: "floor" as const, name: "durable relay on agentowl's schema", value: onSchema.perSec };
    return {
      section: "dispatch",
      figures: [
        figure("receiver hit directly (reference)", direct.perSec, "/s", { p50: direct.p50, p99: direct.p99 }),
        figure("bare relay, nothing stored", bare.perSec, "/s", { p50: bare.p50, p99: bare.p99, vs: [directRef] }),
        figure("durable relay floor, 2 group commits", durable.perSec, "/s", {
          p50: durable.p50,
          p99: durable.p99,
          vs: [directRef],
        }),
        figure("durable relay floor on agentowl's schema and rows", onSchema.perSec, "/s", {
          p50: onSchema.p50,
          p99: onSchema.p99,
          vs: [floor, directRef],
        }),
        figure(`agentowl: ingress → delivered, ${IN_FLIGHT} in flight`, ours.perSec, "/s", {
          p50: ours.p50,
          p99: ours.p99,
          cpuMsPer1000: oursCpu,
          peakRssMiB: meter.peakRssMiB(),
          vs: [floor, schemaFloor, directRef],
        }),
        figure("agentowl own overhead, committed event → arrival", ours.overheadP50, "ms p50", {
          p50: ours.overheadP50,
          p99: ours.overheadP99,
        }),
        figure("own overhead, one event in flight", one.overheadP50, "ms p50", {
          p50: one.overheadP50,
          p99: one.overheadP99,
        }),
        figure(
          `SMTP DATA-end → delivery (${MAILS} mails, ${MAIL_SESSIONS} sessions)`,
          quantile(latencies, 0.5),
          "ms p50",
          {
            p50: quantile(latencies, 0.5),
            p99: quantile(latencies, 0.99),
          },
        ),
      ],
      targets: [
        {
          name: "dispatch / the durable relay floor",
          measured: ours.perSec / durable.perSec,
          op: ">=",
          bound: 0.6,
          unit: "x",
        },
        { name: "own overhead p99", measured: ours.overheadP99, op: "<", bound: 10, unit: " ms" },
      ],
      notes: [],
    };
  } finally {
    await app.stop();
    rx.stop();
    await dns.close();
  }
}
