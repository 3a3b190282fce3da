/**
 * `npm run bench -- http`: verified and durably committed webhooks per second at 50 connections
 * (autocannon, a Standard Webhooks signature made per request by the load generator with Node's
 * HMAC, a unique webhook-id each; the standardwebhooks package checks the same scheme in tests),
 * beside two references sent the same signed requests by the same load generator in the same
 * run: a bare Bun.serve answering 202 with no work (the issue's yardstick), and the floor
 * (bench/peers/http-durable-floor.ts: verify and store one row with group commit, nothing else),
 * which tells how much of the distance to the bare server any durable ingress must keep on this
 * machine. Every server runs in its own process.
 */
import autocannon from "autocannon";
import { createHmac } from "node:crypto";
import { figure, type SectionResult } from "./report.ts";
import { bytesWritten, cpuSeconds, startAppliance, withPeer, withTempDir } from "./common.ts";

const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 50);
const SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 10);
/**
 * Each server is loaded this long before it is measured, alike: on 2 shared cores the JIT
 * compiling a long request path competes with the path itself for the first seconds, which
 * measured start-up rather than the rate the ingress keeps (docs/performance.md#http-ingress).
 */
const WARMUP_SECONDS = Number(process.env.BENCH_HTTP_WARMUP ?? 2);
/** The measured seconds of each server, cut into this many slices taken in turn (interleaved()). */
const SLICES = Number(process.env.BENCH_HTTP_SLICES ?? 10);
/** Random webhook-ids (as GitHub's and Telnyx's UUIDs are) instead of sequential ones: each lands on its own page of the idempotency index. */
const RANDOM_IDS = process.env.BENCH_HTTP_RANDOM_IDS === "1";
export const SECRET = `whsec_${Buffer.from("bench-http-signing-secret-32-byte").toString("base64")}`;
const BODY = JSON.stringify({
  type: "ticket.created",
  ticket: { id: 4711, title: "Printer on floor 2 is out of toner", priority: "low", tags: ["hardware", "printer"] },
});

export interface Result {
  perSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  total: number;
}

/** Standard Webhooks v1, signed with Node's native HMAC: the load generator shares the 2 cores. */
const KEY = Buffer.from(SECRET.slice("whsec_".length), "base64");
const signature = (id: string, ts: string) =>
  `v1,${createHmac("sha256", KEY).update(`${id}.${ts}.${BODY}`).digest("base64")}`;

/** The same signed requests, unique webhook-ids, for both servers: the load generator's own work is the same in both runs. */
/** Webhook-ids go on counting across calls: a slice never repeats an id another slice sent (that would be a replay). */
let n = 0;
export function load(
  url: string,
  connections = CONNECTIONS,
  seconds = SECONDS,
  idPrefix = `msg_bench_${process.pid}`,
): Promise<Result> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url,
        connections,
        duration: seconds,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: BODY,
        requests: [
          {
            setupRequest: (req: any) => {
              const id = RANDOM_IDS ? `msg_${crypto.randomUUID()}` : `${idPrefix}_${++n}`;
              const ts = String(Math.floor(Date.now() / 1000));
              return {
                ...req,
                headers: {
                  ...req.headers,
                  "webhook-id": id,
                  "webhook-timestamp": ts,
                  "webhook-signature": signature(id, ts),
                },
              };
            },
          },
        ],
      },
      (err: Error | null, r: any) =>
        err
          ? reject(err)
          : resolve({
              perSec: Math.round(r.requests.average),
              p50: r.latency.p50,
              p99: r.latency.p99,
              non2xx: r.non2xx,
              total: r.requests.total,
            }),
    );
  });
}

/** One server under the interleaved load: its totals over its slices. */
interface Measured {
  url: string;
  pid: number;
  total: number;
  seconds: number;
  non2xx: number;
  /** CPU seconds over its slices, null when /proc has none. */
  cpu: number | null;
  p50s: number[];
  p99s: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/**
 * The servers loaded in turn, SLICES slices of SECONDS / SLICES each (after warmUp()):
 * on a shared machine the load of the moment changes within a run, and a ratio of two figures
 * taken a minute apart measured that change as much as the servers. Each slice's CPU is read
 * from /proc before and after it, so a server is charged only for its own slices.
 */
async function interleaved(servers: { url: string; pid: number }[]): Promise<Measured[]> {
  const out: Measured[] = servers.map((s) => ({ ...s, total: 0, seconds: 0, non2xx: 0, cpu: 0, p50s: [], p99s: [] }));
  const slice = SECONDS / SLICES;
  for (let i = 0; i < SLICES; i++) {
    for (const m of out) {
      const before = cpuSeconds(m.pid);
      const r = await load(m.url, CONNECTIONS, slice);
      const after = cpuSeconds(m.pid);
      m.cpu = m.cpu === null || before === null || after === null ? null : m.cpu + after - before;
      m.total += r.total;
      m.seconds += slice;
      m.non2xx += r.non2xx;
      m.p50s.push(r.p50);
      m.p99s.push(r.p99);
    }
  }
  return out;
}

async function warmUp(servers: { url: string }[]): Promise<void> {
  if (WARMUP_SECONDS > 0) for (const s of servers) await load(s.url, CONNECTIONS, WARMUP_SECONDS);
}

const rate = (m: Measured) => Math.round(m.total / m.seconds);
const us = (m: Measured) => (m.cpu === null || !m.total ? null : (m.cpu * 1e6) / m.total);
const cpuNote = (x: number | null) => (x === null ? "" : `  CPU ${x.toFixed(1)} µs/request`);
const latency = (m: Measured) => `p50 ${median(m.p50s)} ms  p99 ${median(m.p99s)} ms`;

export async function benchHttp(): Promise<SectionResult> {
  console.log(
    `${CONNECTIONS} connections, ${SECONDS} s each in ${SLICES} interleaved slices after ${WARMUP_SECONDS} s of ` +
      `warm-up, ${BODY.length} byte JSON bodies, ${RANDOM_IDS ? "random" : "sequential"} webhook-ids, autocannon ` +
      "in this process; latency: the median of the slices' percentiles",
  );
  return await withPeer("http-bare.ts", [], (bareUrl, bareProc) =>
    withTempDir("agentowl-bench-floor-", (dir) =>
      withPeer("http-durable-floor.ts", [dir], async (floorUrl, floorProc) => {
        const app = await startAppliance("http");
        const { api, url } = app;
        try {
          await api("POST", "/v1/tenants", { name: "beta" });
          await api("PUT", "/v1/tenants/beta/secrets/hooks", { value: SECRET });
          await api("POST", "/v1/tenants/beta/bindings", {
            name: "hooks",
            type: "webhook",
            verify: { scheme: "standard-webhooks", secret: "vault:beta/hooks" },
          });
          const metric = async () => {
            const text = await (await fetch(`${url}/metrics`)).text();
            return (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, "m").exec(text)?.[1] ?? Number.NaN);
          };
          const servers = [
            { url: `${bareUrl}/ingress`, pid: bareProc.pid },
            { url: `${floorUrl}/ingress`, pid: floorProc.pid },
            { url: `${url}/ingress/webhook/beta/hooks`, pid: app.proc.pid },
          ];
          await warmUp(servers);
          const warm = await metric();
          const writtenBefore = bytesWritten(app.proc.pid);
          const [ref, floor, ours] = await interleaved(servers);
          // Routing may still be catching up with the last events: give it a moment, inside the figure.
          const beforeWait = cpuSeconds(app.proc.pid);
          await Bun.sleep(1000);
          const afterWait = cpuSeconds(app.proc.pid);
          if (ours!.cpu !== null && beforeWait !== null && afterWait !== null) ours!.cpu += afterWait - beforeWait;
          const written = bytesWritten(app.proc.pid);
          const after = await metric();
          return report(
            ref!,
            floor!,
            ours!,
            warm,
            after,
            written !== null && writtenBefore !== null ? written - writtenBefore : null,
          );
        } finally {
          await app.stop();
        }
      }),
    ),
  );
}

function report(
  ref: Measured,
  floor: Measured,
  ours: Measured,
  warm: (name: string) => number,
  after: (name: string) => number,
  written: number | null,
): SectionResult {
  const [bareRate, floorRate, ourRate] = [rate(ref), rate(floor), rate(ours)];
  console.log(
    `bare Bun.serve, 202 and nothing else:      ${String(bareRate).padStart(6)} req/s  ${latency(ref)}${cpuNote(us(ref))}`,
  );
  console.log(
    `floor: verify + one row, group commit:     ${String(floorRate).padStart(6)} req/s  ${latency(floor)}  = ` +
      `${(floorRate / bareRate).toFixed(2)}x bare${cpuNote(us(floor))}`,
  );
  if (ours.non2xx) console.log(`  (${ours.non2xx} answers were not 2xx)`);
  console.log(
    `agentowl: verified + committed, 202:      ${String(ourRate).padStart(6)} req/s  ${latency(ours)}  = ` +
      `${(ourRate / bareRate).toFixed(2)}x bare (target ≥ 0.5x, p99 < 25 ms), ${(ourRate / floorRate).toFixed(2)}x ` +
      "the floor (target ≥ 0.85x)",
  );
  const delta = (name: string) => after(name) - warm(name);
  const commits = delta("agentowl_commit_batch_size_count");
  if (commits > 0) {
    const perEvent =
      written !== null
        ? `; ${(written / ours.total / 1024).toFixed(1)} KiB written per event (WAL and checkpoints)`
        : "";
    console.log(
      `  group commit: ${commits} commits, ${(delta("agentowl_commit_batch_size_sum") / commits).toFixed(1)} ` +
        `units each on average, ${((delta("agentowl_commit_duration_seconds_sum") / commits) * 1000).toFixed(2)} ms each ` +
        `(write and fsync)${perEvent}`,
    );
  }
  const [oursUs, bareUs, floorUs] = [us(ours), us(ref), us(floor)];
  if (oursUs !== null && bareUs !== null) {
    console.log(
      `  CPU per request, all threads, routing included: ${oursUs.toFixed(1)} µs beside the bare server's ` +
        `${bareUs.toFixed(1)} µs${floorUs === null ? "" : ` and the floor's ${floorUs.toFixed(1)} µs`} (the load ` +
        "generator's share of the 2 cores moves the rates, not this)",
    );
  }
  const cpuMs = (x: number | null) => (x === null ? undefined : x);
  const ceiling = { role: "ceiling" as const, name: "bare Bun.serve", value: bareRate };
  const p = (m: Measured) => ({ p50: median(m.p50s), p99: median(m.p99s) });
  return {
    section: "http",
    figures: [
      figure("bare Bun.serve, 202 and nothing else (ceiling)", bareRate, "req/s", {
        ...p(ref),
        cpuMsPer1000: cpuMs(bareUs),
      }),
      figure("floor: verify + one row, group commit", floorRate, "req/s", {
        ...p(floor),
        cpuMsPer1000: cpuMs(floorUs),
        vs: [ceiling],
      }),
      figure("agentowl: verified, committed, routed webhooks", ourRate, "req/s", {
        ...p(ours),
        cpuMsPer1000: cpuMs(oursUs),
        vs: [{ role: "floor", name: "verify + one row", value: floorRate }, ceiling],
      }),
    ],
    targets: [
      { name: "webhooks / the durable floor", measured: ourRate / floorRate, op: ">=", bound: 0.85, unit: "x" },
      { name: "webhook p99", measured: median(ours.p99s), op: "<", bound: 25, unit: " ms" },
    ],
    notes: ours.non2xx ? [`${ours.non2xx} answers were not 2xx`] : [],
  };
}
