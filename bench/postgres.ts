/**
 * `npm run bench -- postgres`: the PostgreSQL driver (docs/architecture.md#the-postgresql-driver)
 * on a throw-away cluster this run starts, durable (fsync on, synchronous_commit on:
 * bench/peers/pg-cluster.ts), each figure beside a reference measured in the same run:
 *   - the durable queue, enqueue and lease+ack at 50 producers, beside pg-boss on the same
 *     database (target ≥ 1.5x on both);
 *   - webhook ingest (signed, verified, committed) and dispatch (ingress → route → policy →
 *     signed POST arriving at a receiver) with one node on PostgreSQL beside one node on SQLite;
 *   - the same with two nodes on one database beside one node: on a 2-core machine two nodes add
 *     no CPU, so the figure is the cost of coordinating through the database (target ≤ 20 % loss).
 * Figures are ratios: the machine is shared.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPostgresStorage } from "../src/store/postgres/index.ts";
import { type Appliance, startAppliance } from "./common.ts";
import { closedLoop, receiver } from "./dispatch.ts";
import { load, SECRET } from "./http.ts";
import { enqueueAll, payload, perSec } from "./peers/common.ts";
import { type BenchCluster, startCluster } from "./peers/pg-cluster.ts";
import { figure, type SectionResult } from "./report.ts";

const PRODUCERS = 50;
const JOBS = Number(process.env.BENCH_PG_JOBS ?? 20_000);
const ROUNDS = Number(process.env.BENCH_PG_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_PG_SECONDS ?? 10);
const CONNECTIONS = 50;
const IN_FLIGHT = 50;
const LEASE_BATCH = 500;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US").padStart(7);

/** What the section returns to the report: each line() adds its figure and target. */
let section: SectionResult = { section: "postgres", figures: [], targets: [], notes: [] };

/** One line: the figure, its reference, the ratio, and the target when there is one. */
function line(what: string, ours: number, ref: number, refName: string, target?: { min: number; text: string }) {
  const r = ours / ref;
  section.figures.push(figure(what, ours, "/s", { vs: [{ role: "reference", name: refName, value: ref }] }));
  if (target)
    section.targets.push({ name: `${what} / ${refName}`, measured: r, op: ">=", bound: target.min, unit: "x" });
  const verdict = target ? `  target ${target.text}: ${r >= target.min ? "met" : "NOT met"}` : "";
  console.log(`${what.padEnd(44)} ${fmt(ours)} /s  ${refName} ${fmt(ref)} /s  = ${r.toFixed(2)}x${verdict}`);
}

/** Our queue: 50 producers each awaiting one durable enqueue at a time, then lease + ack in batches. */
async function oursQueue(url: string): Promise<{ enqueue: number; process: number }> {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-bench-pgq-"));
  const storage = openPostgresStorage({ dir, url });
  try {
    const enqueue = await enqueueAll({ dir, jobs: JOBS, producers: PRODUCERS }, (i) =>
      storage.queue.enqueue({ kind: "bench", payload: payload(i) }),
    );
    const t0 = performance.now();
    let done = 0;
    for (;;) {
      const leased = await storage.queue.lease({ kinds: ["bench"], limit: LEASE_BATCH, visibilityMs: 60_000 });
      if (leased.length === 0) break;
      await Promise.all(leased.map((j) => storage.queue.ack(j)));
      done += leased.length;
    }
    if (done !== JOBS) throw new Error(`processed ${done} of ${JOBS}`);
    return { enqueue, process: perSec(done, performance.now() - t0) };
  } finally {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** pg-boss the same way: `send` from 50 producers, then `fetch` batches of 500 and `complete` each batch. */
async function pgBoss(url: string): Promise<{ enqueue: number; process: number; version: string }> {
  const { PgBoss } = await import("pg-boss");
  const version = ((await import("pg-boss/package.json")) as { version: string }).version;
  const boss = new PgBoss({ connectionString: url, schedule: false, supervise: false, max: 10 });
  boss.on("error", (e: Error) => console.error(`pg-boss: ${e.message}`));
  await boss.start();
  try {
    await boss.createQueue("bench");
    const enqueue = await enqueueAll({ dir: "", jobs: JOBS, producers: PRODUCERS }, (i) =>
      boss.send("bench", payload(i)),
    );
    const t0 = performance.now();
    let done = 0;
    for (;;) {
      const jobs = await boss.fetch("bench", { batchSize: LEASE_BATCH });
      if (!jobs.length) break;
      await boss.complete(
        "bench",
        jobs.map((j) => j.id),
      );
      done += jobs.length;
    }
    if (done !== JOBS) throw new Error(`pg-boss processed ${done} of ${JOBS}`);
    return { enqueue, process: perSec(done, performance.now() - t0), version };
  } finally {
    await boss.stop({ graceful: false, timeout: 5000 }).catch(() => {});
  }
}

async function benchQueues(cluster: BenchCluster): Promise<void> {
  const rounds: { ours: { enqueue: number; process: number }; boss: { enqueue: number; process: number } }[] = [];
  let version = "";
  for (let r = 0; r < ROUNDS; r++) {
    // One database per round, shared by both: our tables in public, pg-boss's in its own schema.
    const url = await cluster.database(`bench_queue_${r}`);
    const boss = await pgBoss(url);
    version = boss.version;
    rounds.push({ ours: await oursQueue(url), boss });
  }
  console.log(
    `durable queue, ${PRODUCERS} producers, ${JOBS.toLocaleString("en-US")} jobs, lease+ack in batches of ` +
      `${LEASE_BATCH}; median of ${ROUNDS} rounds, pg-boss ${version} on the same database`,
  );
  const m = (f: (x: (typeof rounds)[number]) => number) => median(rounds.map(f));
  line(
    "enqueue",
    m((x) => x.ours.enqueue),
    m((x) => x.boss.enqueue),
    "pg-boss",
    { min: 1.5, text: "≥ 1.5x" },
  );
  line(
    "lease + ack",
    m((x) => x.ours.process),
    m((x) => x.boss.process),
    "pg-boss",
    { min: 1.5, text: "≥ 1.5x" },
  );
}

/** A tenant with a signed webhook binding (ingest) and a plain one routed to `rx` through a policy (dispatch). */
async function configure(app: Appliance, rxUrl: string): Promise<void> {
  const { api } = app;
  await api("POST", "/v1/tenants", { name: "beta" });
  await api("PUT", "/v1/tenants/beta/secrets/hooks", { value: SECRET });
  await api("POST", "/v1/tenants/beta/bindings", {
    name: "hooks",
    type: "webhook",
    verify: { scheme: "standard-webhooks", secret: "vault:beta/hooks" },
  });
  await api("PUT", "/v1/tenants/beta/secrets/receiver", { value: SECRET });
  await api("POST", "/v1/tenants/beta/endpoints", {
    name: "receiver",
    url: rxUrl,
    signing_secret: "vault:beta/receiver",
    max_in_flight: 100,
  });
  await api("POST", "/v1/tenants/beta/bindings", { name: "plain", type: "webhook", verify: { scheme: "none" } });
  // Only the dispatch loop's events are routed: the ingest load's are stored, not delivered.
  await api("POST", "/v1/tenants/beta/routes", {
    name: "bench",
    match: { "source.binding": "plain" },
    to: ["receiver"],
  });
  await api("POST", "/v1/tenants/beta/policies", {
    name: "guard",
    rules: [{ when: { target: "receiver", "json.type": "refund.requested" }, effect: "require_approval" }],
  });
}

const DISPATCH_BODY = JSON.stringify({ type: "dispatch.bench", ticket: { id: 4711, title: "toner" } });

/** Ingest (autocannon, signed webhooks, split over the nodes) and dispatch (closed loop through the receiver). */
async function measure(
  nodes: readonly Appliance[],
  rx: ReturnType<typeof receiver>,
  tag: string,
): Promise<{ ingest: number; dispatch: number }> {
  const per = Math.max(1, Math.floor(CONNECTIONS / nodes.length));
  const ingests = await Promise.all(
    nodes.map((n, i) => load(`${n.url}/ingress/webhook/beta/hooks`, per, SECONDS, `msg_${tag}_${process.pid}_${i}`)),
  );
  for (const r of ingests) if (r.non2xx) console.log(`  (${tag}: ${r.non2xx} ingest answers were not 2xx)`);
  const ingest = ingests.reduce((a, r) => a + r.perSec, 0);
  const loop = (seconds: number) =>
    closedLoop(
      async (i) => {
        const t0 = performance.now();
        const node = nodes[i % nodes.length]!;
        const r = await fetch(`${node.url}/ingress/webhook/beta/plain`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: DISPATCH_BODY,
        });
        if (r.status !== 202) throw new Error(`ingress answered ${r.status}`);
        const { id } = (await r.json()) as { id: string };
        await rx.arrival(id);
        return performance.now() - t0;
      },
      IN_FLIGHT,
      seconds,
    );
  await loop(2); // warm-up: connections, caches, the JIT
  const dispatch = (await loop(SECONDS)).perSec;
  return { ingest, dispatch };
}

/** Wait until an event sent to `app` arrives at the receiver: it knows what the other node configured. */
async function until(app: Appliance, rx: ReturnType<typeof receiver>): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    const r = await fetch(`${app.url}/ingress/webhook/beta/plain`, { method: "POST", body: DISPATCH_BODY });
    if (r.status === 202) {
      const { id } = (await r.json()) as { id: string };
      const arrived = await Promise.race([rx.arrival(id).then(() => true), Bun.sleep(2000).then(() => false)]);
      if (arrived) return;
    } else await r.arrayBuffer();
    if (performance.now() > deadline) throw new Error(`the second node does not deliver (answered ${r.status})`);
    await Bun.sleep(100);
  }
}

async function benchNodes(cluster: BenchCluster): Promise<void> {
  const rx = receiver();
  const results: Record<string, { ingest: number; dispatch: number }> = {};
  try {
    const sqlite = await startAppliance("pg-sqlite");
    try {
      await configure(sqlite, rx.url);
      results.sqlite = await measure([sqlite], rx, "sqlite");
    } finally {
      await sqlite.stop();
    }
    const one = await startAppliance("pg-one", { AGENTOWL_DATABASE_URL: await cluster.database("bench_one") });
    try {
      await configure(one, rx.url);
      results.one = await measure([one], rx, "one");
    } finally {
      await one.stop();
    }
    const url = await cluster.database("bench_two");
    const a = await startAppliance("pg-a", { AGENTOWL_DATABASE_URL: url });
    let b: Appliance | null = null;
    try {
      await configure(a, rx.url);
      // The nodes share the vault's master key (and the audit key beside it), as a cluster must.
      b = await startAppliance("pg-b", {
        AGENTOWL_DATABASE_URL: url,
        AGENTOWL_MASTER_KEY_FILE: join(a.dir, "master.key"),
      });
      await until(b, rx);
      results.two = await measure([a, b], rx, "two");
    } finally {
      await b?.stop();
      await a.stop();
    }
  } finally {
    rx.stop();
  }
  const { sqlite, one, two } = results as Record<string, { ingest: number; dispatch: number }>;
  console.log(
    `\nwebhooks, ${SECONDS} s each: ingest = ${CONNECTIONS} connections of signed webhooks (verified, committed, 202); ` +
      `dispatch = ${IN_FLIGHT} events in flight, ingress → route → policy → signed POST → receiver`,
  );
  line("ingest, one node on PostgreSQL", one!.ingest, sqlite!.ingest, "SQLite");
  line("dispatch, one node on PostgreSQL", one!.dispatch, sqlite!.dispatch, "SQLite");
  const loss = { min: 0.8, text: "≤ 20 % loss" };
  line("ingest, two nodes on one database", two!.ingest, one!.ingest, "one node", loss);
  line("dispatch, two nodes on one database", two!.dispatch, one!.dispatch, "one node", loss);
}

export async function benchPostgres(): Promise<SectionResult> {
  section = { section: "postgres", figures: [], targets: [], notes: [] };
  const cluster = await startCluster();
  try {
    console.log(
      `PostgreSQL ${cluster.version}, a throw-away cluster under ${tmpdir()} (the SQLite node's disk): fsync on, ` +
        `synchronous_commit on, full_page_writes on; clients and servers on the same 2 cores; ${new Date().toISOString()}\n`,
    );
    // BENCH_PG_ONLY=queue|nodes runs one half (while profiling one of them).
    const only = process.env.BENCH_PG_ONLY;
    if (only !== "nodes") await benchQueues(cluster);
    if (only !== "queue") await benchNodes(cluster);
    return section;
  } finally {
    cluster.stop();
  }
}
