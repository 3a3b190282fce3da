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
import { procMeter } from "./measure.ts";
import { figure, type SectionResult } from "./report.ts";
import { SmtpClient } from "./smtp.ts";

const IN_FLIGHT = Number(process.env.BENCH_DISPATCH_IN_FLIGHT ?? 50);
const SECONDS = Number(process.env.BENCH_DISPATCH_SECONDS ?? 10);
const MAILS = Number(process.env.BENCH_DISPATCH_MAILS ?? 1000);
/** The measured seconds of each contender, cut into this many slices taken in turn (interleaved()). */
const SLICES = Number(process.env.BENCH_DISPATCH_SLICES ?? 6);
/** Each contender is loaded this long before it is measured, alike: connections, caches, the JIT. */
const WARMUP_SECONDS = Number(process.env.BENCH_DISPATCH_WARMUP ?? 2);
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

/** `inFlight` loops for `seconds`, each running `one` again as soon as it returns its latency: the latencies and the wall time. */
async function loop(
  one: (i: number) => Promise<number>,
  inFlight: number,
  seconds: number,
): Promise<{ latencies: number[]; ms: number }> {
  const latencies: number[] = [];
  let i = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) latencies.push(await one(i++));
    }),
  );
  return { latencies, ms: performance.now() - t0 };
}

function figuresOf(latencies: number[], ms: number): Figures {
  latencies.sort((a, b) => a - b);
  return {
    perSec: Math.round((latencies.length * 1000) / ms),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    n: latencies.length,
  };
}

/** `inFlight` loops for SECONDS, each running `one` again as soon as it returns its latency. */
export async function closedLoop(
  one: (i: number) => Promise<number>,
  inFlight = IN_FLIGHT,
  seconds = SECONDS,
): Promise<Figures> {
  const { latencies, ms } = await loop(one, inFlight, seconds);
  return figuresOf(latencies, ms);
}

/** CPU seconds and bytes written so far by `pid`; nulls where /proc has none or for this process (null). */
const usage = (pid: number | null) =>
  pid === null ? { cpu: null, bytes: null } : { cpu: cpuSeconds(pid), bytes: bytesWritten(pid) };
/** `total` plus what a slice added (`to - from`); null once any reading was missing. */
const added = (total: number | null, from: number | null, to: number | null) =>
  total === null || from === null || to === null ? null : total + to - from;

/** One contender of the interleaved run: its loop's body, and the process charged with its CPU and writes (null: this one). */
interface Contender {
  one: (i: number) => Promise<number>;
  pid: number | null;
}

/**
 * The contenders loaded in turn, SLICES slices of SECONDS / SLICES each, after WARMUP_SECONDS of
 * load each: on a shared machine the load of the moment changes within a run, and figures taken
 * half a minute apart (the floors first, then the appliance) measured that change as much as the
 * relays: the same code's ratio to its floor moved between 0.41x and 0.62x from run to run. Each
 * slice's CPU and writes are read from /proc before and after it, so a process is charged only
 * for its own slices (the appliance's last attempts' commits, just after its slice ends, fall
 * outside: about IN_FLIGHT events' worth a slice). `measuring` runs once the warm-ups are over.
 */
async function interleaved(contenders: Contender[], measuring: () => Promise<void>): Promise<Figures[]> {
  for (const c of contenders) if (WARMUP_SECONDS > 0) await loop(c.one, IN_FLIGHT, WARMUP_SECONDS);
  await measuring();
  const tallies = contenders.map(() => ({
    latencies: [] as number[],
    ms: 0,
    cpu: 0 as number | null,
    bytes: 0 as number | null,
  }));
  for (let slice = 0; slice < SLICES; slice++) {
    for (const [k, c] of contenders.entries()) {
      const t = tallies[k]!;
      const before = usage(c.pid);
      const r = await loop(c.one, IN_FLIGHT, SECONDS / SLICES);
      const after = usage(c.pid);
      for (const l of r.latencies) t.latencies.push(l);
      t.ms += r.ms;
      t.cpu = added(t.cpu, before.cpu, after.cpu);
      t.bytes = added(t.bytes, before.bytes, after.bytes);
    }
  }
  return tallies.map((t) => {
    const f = figuresOf(t.latencies, t.ms);
    return {
      ...f,
      ...(t.cpu !== null && f.n ? { cpuUs: (t.cpu * 1e6) / f.n } : {}),
      ...(t.bytes !== null && f.n ? { bytes: t.bytes / f.n } : {}),
    };
  });
}

const fmt = (ms: number) => ms.toFixed(2);

export async function benchDispatch(): Promise<SectionResult> {
  console.log(
    `${IN_FLIGHT} events in flight, ${SECONDS} s each in ${SLICES} interleaved slices after ${WARMUP_SECONDS} s of ` +
      "warm-up each; receiver and load generator in this process",
  );
  const rx = receiver();
  const dns = await startDnsServer({});
  try {
    // The ceilings of any relay on this machine, through the same loop: nothing stored, and the
    // least storage docs/state-machines.md allows (bench/peers/relay.ts); then the same floor
    // writing agentowl's own tables, indexes and rows (`schema`): what the appliance's storage
    // alone costs, before any of its code. All of them alive at once, loaded in turn.
    return await withPeer("relay.ts", [rx.url], (bareUrl, bareProc) =>
      withTempDir("agentowl-bench-relay-", (durableDir) =>
        withPeer("relay.ts", [rx.url, durableDir], (durableUrl, durableProc) =>
          withTempDir("agentowl-bench-relay-", (schemaDir) =>
            withPeer("relay.ts", [rx.url, schemaDir, "schema"], (schemaUrl, schemaProc) =>
              measure(rx, dns, [
                { one: relayed(rx, bareUrl), pid: bareProc.pid },
                { one: relayed(rx, durableUrl), pid: durableProc.pid },
                { one: relayed(rx, schemaUrl), pid: schemaProc.pid },
              ]),
            ),
          ),
        ),
      ),
    );
  } finally {
    rx.stop();
    await dns.close();
  }
}

type Receiver = ReturnType<typeof receiver>;

/** Reference: the load generator POSTs a signed envelope straight to the receiver. */
function direct(rx: Receiver): (i: number) => Promise<number> {
  const envelope = JSON.stringify({ id: "evt_direct", type: "webhook.received", data: { json: JSON.parse(BODY) } });
  return async (i) => {
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
  };
}

/** One event through a relay (bench/peers/relay.ts): its POST, then its arrival at the receiver. */
function relayed(rx: Receiver, url: string): () => Promise<number> {
  return async () => {
    const t0 = performance.now();
    const r = await fetch(`${url}/ingress`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: BODY,
    });
    const { id } = (await r.json()) as { id: string };
    await rx.arrival(id);
    return performance.now() - t0;
  };
}

/** The appliance beside the references (`relays`: bare, durable floor, floor on the schema), then its latencies alone. */
async function measure(
  rx: Receiver,
  dns: Awaited<ReturnType<typeof startDnsServer>>,
  relays: Contender[],
): Promise<SectionResult> {
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
    /** One event through the appliance; its own overhead (committed → arrival) goes to `overheads`. */
    const through = (overheads: number[]) => async () => {
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
    };
    const overheads: number[] = [];
    let c0 = await commits();
    const [reference, bare, durable, onSchema, ours] = (await interleaved(
      [{ one: direct(rx), pid: null }, ...relays, { one: through(overheads), pid: app.proc.pid }],
      async () => {
        // From here on the appliance's figures count: its warm-up's overheads and commits do not.
        overheads.length = 0;
        c0 = await commits();
      },
    )) as [Figures, Figures, Figures, Figures, Figures];
    const c1 = await commits();
    overheads.sort((a, b) => a - b);
    const perEvent = (x: number, y: number) => (x - y) / ours.n;
    console.log(
      `receiver hit directly (signed POST, 200):   ${String(reference.perSec).padStart(6)} /s  p50 ${fmt(reference.p50)} ms  p99 ${fmt(reference.p99)} ms`,
    );
    console.log(
      `bare relay (202, then a signed fetch):     ${String(bare.perSec).padStart(6)} /s ` +
        `= ${(bare.perSec / reference.perSec).toFixed(2)}x direct  p50 ${fmt(bare.p50)} ms  p99 ${fmt(bare.p99)} ms${cpu(bare)}`,
    );
    console.log(
      `durable relay floor (2 group commits):     ${String(durable.perSec).padStart(6)} /s ` +
        `= ${(durable.perSec / reference.perSec).toFixed(2)}x direct  p50 ${fmt(durable.p50)} ms  ` +
        `p99 ${fmt(durable.p99)} ms${cpu(durable)}`,
    );
    console.log(
      `  the same on agentowl's schema and rows:  ${String(onSchema.perSec).padStart(6)} /s ` +
        `= ${(onSchema.perSec / durable.perSec).toFixed(2)}x the floor  p50 ${fmt(onSchema.p50)} ms  ` +
        `p99 ${fmt(onSchema.p99)} ms${cpu(onSchema)}`,
    );
    console.log(
      `via agentowl (ingress, route, policy, audit, signed ` +
        `POST): ${String(ours.perSec).padStart(6)} /s ` +
        `= ${(ours.perSec / reference.perSec).toFixed(2)}x direct (target ≥ ` +
        `0.5x), ${(ours.perSec / durable.perSec).toFixed(2)}x the durable relay floor (target ≥ 0.6x)${cpu(ours)}` +
        (ours.cpuUs && durable.cpuUs ? ` = ${(ours.cpuUs / durable.cpuUs).toFixed(1)}x the floor's` : ""),
    );
    console.log(
      `  beside the floor on agentowl's schema and rows: ${(ours.perSec / onSchema.perSec).toFixed(2)}x its rate` +
        (ours.cpuUs && onSchema.cpuUs ? `, ${(ours.cpuUs / onSchema.cpuUs).toFixed(1)}x its CPU per event` : "") +
        ` (the rest of the distance to the floor is the schema's)`,
    );
    const overheadP50 = quantile(overheads, 0.5);
    const overheadP99 = quantile(overheads, 0.99);
    console.log(
      `  own overhead, committed event → arrival at the receiver: p50 ${fmt(overheadP50)} ms  p99 ${fmt(overheadP99)} ms (target p99 < 10 ms)`,
    );
    console.log(
      `  per event: ${perEvent(c1.commits, c0.commits).toFixed(2)} group commits (the floor: 2, shared), ` +
        `${perEvent(c1.units, c0.units).toFixed(2)} units of work, ` +
        `${(perEvent(c1.seconds, c0.seconds) * 1e6).toFixed(0)} µs inside commits (statements, COMMIT and its fsync)`,
    );
    console.log(
      `  ingress POST → arrival at the receiver:                 p50 ${fmt(ours.p50)} ms  p99 ${fmt(ours.p99)} ms`,
    );
    const alone: number[] = [];
    const one = await closedLoop(through(alone), 1, Math.max(2, SECONDS / 2));
    alone.sort((a, b) => a - b);
    console.log(
      `  one event in flight: own overhead p50 ${fmt(quantile(alone, 0.5))} ms  p99 ${fmt(quantile(alone, 0.99))} ms (${one.perSec} /s)`,
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
    const directRef = { role: "reference" as const, name: "receiver hit directly", value: reference.perSec };
    const floor = { role: "floor" as const, name: "durable relay", value: durable.perSec };
    const schemaFloor = { role: "floor" as const, name: "durable relay on agentowl's schema", value: onSchema.perSec };
    return {
      section: "dispatch",
      figures: [
        figure("receiver hit directly (reference)", reference.perSec, "/s", { p50: reference.p50, p99: reference.p99 }),
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
          cpuMsPer1000: ours.cpuUs,
          peakRssMiB: procMeter(app.proc.pid).peakRssMiB(),
          vs: [floor, schemaFloor, directRef],
        }),
        figure("agentowl own overhead, committed event → arrival", overheadP50, "ms p50", {
          p50: overheadP50,
          p99: overheadP99,
        }),
        figure("own overhead, one event in flight", quantile(alone, 0.5), "ms p50", {
          p50: quantile(alone, 0.5),
          p99: quantile(alone, 0.99),
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
        { name: "own overhead p99", measured: overheadP99, op: "<", bound: 10, unit: " ms" },
      ],
      notes: [],
    };
  } finally {
    await app.stop();
  }
}
