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
import { bytesWritten, cpuSeconds, startAppliance, withPeer, withTempDir } from "./common.ts";
import { procMeter } from "./measure.ts";
import { figure, type SectionResult } from "./report.ts";

const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 50);
const SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 10);
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
export function load(
  url: string,
  connections = CONNECTIONS,
  seconds = SECONDS,
  idPrefix = `msg_bench_${process.pid}`,
): Promise<Result> {
  let n = 0;
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

/** CPU microseconds per request between two readings, when /proc has them. */
function perRequestUs(before: number | null, after: number | null, requests: number): number | null {
  return before === null || after === null || !requests ? null : ((after - before) * 1e6) / requests;
}

/** A reference server in its own process, loaded like the appliance: its figures and CPU per request. */
function reference(script: string, args: string[] = []): Promise<Result & { us: number | null; rss?: number }> {
  return withPeer(script, args, async (url, proc) => {
    const cpu = cpuSeconds(proc.pid);
    const r = await load(`${url}/ingress`);
    return { ...r, us: perRequestUs(cpu, cpuSeconds(proc.pid), r.total), rss: procMeter(proc.pid).peakRssMiB() };
  });
}

const cpuNote = (us: number | null) => (us === null ? "" : `  CPU ${us.toFixed(1)} µs/request`);

export async function benchHttp(): Promise<SectionResult> {
  console.log(
    `${CONNECTIONS} connections, ${SECONDS} s each, ${BODY.length} byte JSON ` +
      `bodies, ${RANDOM_IDS ? "random" : "sequential"} webhook-ids, autocannon in this process`,
  );
  const ref = await reference("http-bare.ts");
  const bareUs = ref.us;
  console.log(
    `bare Bun.serve, 202 and nothing else:      ${String(ref.perSec).padStart(6)} req/s  p50 ${ref.p50} ms  p99 ${ref.p99} ms${cpuNote(bareUs)}`,
  );
  const floor = await withTempDir("agentowl-bench-floor-", (dir) => reference("http-durable-floor.ts", [dir]));
  console.log(
    `floor: verify + one row, group commit:     ${String(floor.perSec).padStart(6)} req/s  ` +
      `p50 ${floor.p50} ms  p99 ${floor.p99} ms  = ${(floor.perSec / ref.perSec).toFixed(2)}x ` +
      `bare${cpuNote(floor.us)}`,
  );

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
    const meter = procMeter(app.proc.pid);
    const before = cpuSeconds(app.proc.pid);
    const writtenBefore = bytesWritten(app.proc.pid);
    const ours = await load(`${url}/ingress/webhook/beta/hooks`);
    // Routing may still be catching up with the last events: give it a moment, inside the figure.
    await Bun.sleep(1000);
    const oursUs = perRequestUs(before, cpuSeconds(app.proc.pid), ours.total);
    const written = bytesWritten(app.proc.pid);
    if (ours.non2xx) console.log(`  (${ours.non2xx} answers were not 2xx)`);
    console.log(
      `agentowl: verified + committed, 202:      ${String(ours.perSec).padStart(6)} req/s  ` +
        `p50 ${ours.p50} ms  p99 ${ours.p99} ms (target < 25 ms)  = ${(ours.perSec / ref.perSec).toFixed(2)}x bare, ` +
        `${(ours.perSec / floor.perSec).toFixed(2)}x the floor (target ≥ 0.85x)`,
    );
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const metric = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, "m").exec(metrics)?.[1] ?? Number.NaN);
    const commits = metric("agentowl_commit_batch_size_count");
    if (commits > 0) {
      const perEvent =
        written !== null && writtenBefore !== null
          ? `; ${((written - writtenBefore) / ours.total / 1024).toFixed(1)} KiB written per event (WAL and checkpoints)`
          : "";
      console.log(
        `  group commit: ${commits} ` +
          `commits, ${(metric("agentowl_commit_batch_size_sum") / commits).toFixed(1)} units each on ` +
          `average, ${((metric("agentowl_commit_duration_seconds_sum") / commits) * 1000).toFixed(2)} ` +
          `ms each (write and fsync)${perEvent}`,
      );
    }
    const peakRssMiB = meter.peakRssMiB();
    const us = (x: number | null) => x ?? undefined;
    if (oursUs !== null && bareUs !== null) {
      console.log(
        `  CPU per request, all threads, routing included: ${oursUs.toFixed(1)} µs beside the bare ` +
          `server's ${bareUs.toFixed(1)} ` +
          `µs${floor.us === null ? "" : ` and the floor's ${floor.us.toFixed(1)} µs`} (the load ` +
          `generator's share of the 2 cores moves the rates, not this)`,
      );
    }
    const ceiling = { role: "ceiling" as const, name: "bare Bun.serve", value: ref.perSec };
    return {
      section: "http",
      figures: [
        figure("bare Bun.serve, 202 and nothing else (ceiling)", ref.perSec, "req/s", {
          p50: ref.p50,
          p99: ref.p99,
          cpuMsPer1000: us(ref.us),
          peakRssMiB: ref.rss,
        }),
        figure("floor: verify + one row, group commit", floor.perSec, "req/s", {
          p50: floor.p50,
          p99: floor.p99,
          cpuMsPer1000: us(floor.us),
          peakRssMiB: floor.rss,
          vs: [ceiling],
        }),
        figure("agentowl: verified, committed, routed webhooks", ours.perSec, "req/s", {
          p50: ours.p50,
          p99: ours.p99,
          cpuMsPer1000: us(oursUs),
          peakRssMiB,
          vs: [{ role: "floor", name: "verify + one row", value: floor.perSec }, ceiling],
        }),
      ],
      targets: [
        {
          name: "webhooks / the durable floor",
          measured: ours.perSec / floor.perSec,
          op: ">=",
          bound: 0.85,
          unit: "x",
        },
        { name: "webhook p99", measured: ours.p99, op: "<", bound: 25, unit: " ms" },
      ],
      notes: ours.non2xx ? [`${ours.non2xx} answers were not 2xx`] : [],
    };
  } finally {
    await app.stop();
  }
}
