/**
 * `npm run bench -- queue`: our durable queue beside, in the same run and on the same disk,
 *   - the same queue committing one transaction per item (what group commit is measured against),
 *   - a bare bun:sqlite insert loop with the same durability (WAL, synchronous=FULL),
 *   - the SQLite job queues a user would otherwise pick: bunqueue (embedded), plainjob, liteque,
 *     each forced to fsync on every commit (bench/peers/*.ts say how),
 * and the committer's batch-size distribution. Figures are ratios: this machine is shared.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JobRunner } from "../src/workers/job-runner.ts";
import { silentLogger } from "../src/core/log.ts";
import { openSqliteStorage } from "../src/store/index.ts";
import { runPeer as bunqueue } from "./peers/bunqueue.ts";
import { enqueueAll, payload, type PeerResult, perSec } from "./peers/common.ts";
import { runPeer as liteque } from "./peers/liteque.ts";
import { runPeer as plainjob } from "./peers/plainjob.ts";
import { runRawSqlite } from "./peers/raw-sqlite.ts";
import { per1000, selfMeter } from "./measure.ts";
import { figure, type Figure, type SectionResult, type Target } from "./report.ts";

const PRODUCERS = 50;
const BIG = Number(process.env.BENCH_JOBS ?? 50_000);
const PEER_JOBS = Number(process.env.BENCH_PEER_JOBS ?? 5_000);
const PER_ITEM_JOBS = 3_000;
/** The machine is shared and noisy: the group-commit ratio is the median of interleaved rounds. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "agentowl-bench-"));
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = tempDir();
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Enqueue with 50 producers, then lease + ack everything in batched claims. */
async function ours(jobs: number, maxBatch: number) {
  return withDir(async (dir) => {
    const storage = openSqliteStorage({ dir, maxBatch });
    const enqueuePerSec = await enqueueAll({ dir, jobs, producers: PRODUCERS }, (i) =>
      storage.queue.enqueue({ kind: "bench", payload: payload(i) }),
    );
    const batches = new Map(storage.committer.stats().batchSizes);
    const commits = storage.committer.stats().commits;
    const t0 = performance.now();
    let done = 0;
    for (;;) {
      const leased = await storage.queue.lease({ limit: 500, visibilityMs: 60_000 });
      if (leased.length === 0) break;
      await Promise.all(leased.map((j) => storage.queue.ack(j)));
      done += leased.length;
    }
    const processPerSec = perSec(done, performance.now() - t0);
    await storage.close();
    if (done !== jobs) throw new Error(`processed ${done} of ${jobs}`);
    return { enqueuePerSec, processPerSec, batches, commits };
  });
}

/** The same jobs through the JobRunner (what `agentowl serve` runs), no-op handler. */
async function oursRunner(jobs: number): Promise<number> {
  return withDir(async (dir) => {
    const storage = openSqliteStorage({ dir });
    await enqueueAll({ dir, jobs, producers: PRODUCERS }, (i) =>
      storage.queue.enqueue({ kind: "bench", payload: payload(i) }),
    );
    let left = jobs;
    let finished!: () => void;
    const all = new Promise<void>((r) => (finished = r));
    const runner = new JobRunner({
      queue: storage.queue,
      handlers: new Map([["bench", async () => {}]]),
      log: silentLogger,
      concurrency: 500,
      visibilityMs: 60_000,
      onOutcome: () => --left === 0 && finished(),
    });
    const t0 = performance.now();
    runner.start();
    await all;
    const rate = perSec(jobs, performance.now() - t0);
    await runner.stop(1000);
    await storage.close();
    return rate;
  });
}

const fmt = (n: number) => n.toLocaleString("en-US");
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

export async function benchQueue(): Promise<SectionResult> {
  console.log(
    `queue benchmark: ${PRODUCERS} producers; WAL + synchronous=FULL everywhere; ${new Date().toISOString()}\n`,
  );

  const rounds: {
    perItem: number;
    group: number;
    lease: number;
    commits: number;
    batches: Map<number, number>;
    cpu?: number;
    rss?: number;
  }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const perItem = await ours(PER_ITEM_JOBS, 1);
    const meter = selfMeter();
    const group = await ours(BIG, 1000);
    rounds.push({
      cpu: per1000(meter.cpuMs(), BIG),
      rss: meter.peakRssMiB(),
      perItem: perItem.enqueuePerSec,
      group: group.enqueuePerSec,
      lease: group.processPerSec,
      commits: group.commits,
      batches: group.batches,
    });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const perItem = median(rounds.map((r) => r.perItem));
  const groupRate = median(rounds.map((r) => r.group));
  const group = {
    enqueuePerSec: groupRate,
    processPerSec: median(rounds.map((r) => r.lease)),
    commits: rounds[0]!.commits,
    batches: rounds[0]!.batches,
  };
  const runner = await oursRunner(BIG);
  const raw = await withDir((dir) => runRawSqlite({ dir, jobs: PER_ITEM_JOBS, producers: PRODUCERS }));

  console.log(`1. Group commit (our queue, durable enqueue), median of ${ROUNDS} interleaved rounds`);
  for (const [i, r] of rounds.entries()) {
    console.log(
      `   round ${i + 1}: per item ${fmt(r.perItem)}/s, group ${fmt(r.group)}/s, ratio ${ratio(r.group, r.perItem)}`,
    );
  }
  console.log(`   one transaction per item: ${fmt(perItem)} jobs/s (${PER_ITEM_JOBS} jobs)`);
  console.log(
    `   group commit:             ${fmt(group.enqueuePerSec)} jobs/s (${BIG} jobs, ${group.commits} commits)`,
  );
  console.log(
    `   ratio: ${ratio(group.enqueuePerSec, perItem)}; median of per-round ` +
      `ratios ${median(rounds.map((r) => r.group / r.perItem)).toFixed(2)}x (target >= 20x)`,
  );
  console.log(
    `   reference, bare bun:sqlite: ${fmt(raw.perItemPerSec)} rows/s one per transaction, ${fmt(raw.batchedPerSec)} rows/s in 1000-row transactions`,
  );
  console.log(
    `   our group commit / bare per-row ` +
      `loop: ${ratio(group.enqueuePerSec, raw.perItemPerSec)}; / bare 1000-row ` +
      `batches: ${ratio(group.enqueuePerSec, raw.batchedPerSec)}\n`,
  );

  console.log("2. Lease + ack (batched claims of 500, acks group-committed)");
  console.log(`   lease+ack loop: ${fmt(group.processPerSec)} jobs/s (target >= 20,000)`);
  console.log(`   JobRunner, no-op handler, concurrency 500: ${fmt(runner)} jobs/s\n`);

  console.log("3. Committer batch sizes during the group-commit run (units per commit: commits)");
  for (const [bucket, n] of [...group.batches].sort((a, b) => a[0] - b[0])) console.log(`   <= ${bucket}: ${n}`);
  console.log("");

  console.log(`4. Against SQLite job-queue packages, ${PEER_JOBS} jobs each, same producers, same durability`);
  const mine = await ours(PEER_JOBS, 1000);
  const peers: PeerResult[] = [];
  const failed: string[] = [];
  for (const [name, run] of [
    ["bunqueue", bunqueue],
    ["plainjob", plainjob],
    ["liteque", liteque],
  ] as const) {
    try {
      peers.push(await withDir((dir) => run({ dir, jobs: PEER_JOBS, producers: PRODUCERS })));
    } catch (e) {
      console.log(`   ${name}: failed: ${(e as Error).message}`);
      failed.push(`peer ${name} failed: ${(e as Error).message}`);
    }
  }
  const rows = [
    ["agentowl", "this repo", "WAL + synchronous=FULL, group commit", mine.enqueuePerSec, mine.processPerSec],
    ...peers.map((p) => [p.name, p.version, p.durability, p.enqueuePerSec, p.processPerSec] as const),
  ] as const;
  console.log(`   ${"queue".padEnd(22)} ${"enqueue/s".padStart(10)} ${"process/s".padStart(10)}  durability`);
  for (const [name, version, durability, e, p] of rows) {
    console.log(
      `   ${`${name} ${version}`.padEnd(22)} ${fmt(e as number).padStart(10)} ${fmt(p as number).padStart(10)}  ${durability}`,
    );
  }
  if (peers.length) {
    const bestEnqueue = Math.max(...peers.map((p) => p.enqueuePerSec));
    const bestProcess = Math.max(...peers.map((p) => p.processPerSec));
    console.log(
      `   agentowl / best peer: enqueue ${ratio(mine.enqueuePerSec, bestEnqueue)}, process ${ratio(mine.processPerSec, bestProcess)} (target >= 1.5x)`,
    );
  }
  for (const p of peers) if (p.notes) console.log(`   note, ${p.name}: ${p.notes}`);

  const cpu = rounds.map((r) => r.cpu).filter((x) => x !== undefined);
  const figures: Figure[] = [
    figure("durable enqueue, one transaction per item (reference)", perItem, "jobs/s"),
    figure("durable enqueue, group commit", group.enqueuePerSec, "jobs/s", {
      cpuMsPer1000: cpu.length ? median(cpu) : undefined,
      peakRssMiB: rounds[0]!.rss,
      vs: [
        { role: "reference", name: "one transaction per item", value: perItem },
        { role: "reference", name: "bare bun:sqlite, one row per transaction", value: raw.perItemPerSec },
        { role: "ceiling", name: "bare bun:sqlite, 1000-row transactions", value: raw.batchedPerSec },
      ],
    }),
    figure("lease + ack, batched claims of 500", group.processPerSec, "jobs/s"),
    figure("JobRunner, no-op handler, concurrency 500", runner, "jobs/s"),
  ];
  const targets: Target[] = [
    {
      name: "group commit / one transaction per item",
      measured: group.enqueuePerSec / perItem,
      op: ">=",
      bound: 20,
      unit: "x",
    },
    { name: "lease + ack", measured: group.processPerSec, op: ">=", bound: 20_000, unit: " jobs/s" },
  ];
  if (peers.length) {
    const best = (k: "enqueuePerSec" | "processPerSec") => peers.reduce((a, b) => (b[k] > a[k] ? b : a));
    for (const [k, what] of [
      ["enqueuePerSec", "enqueue"],
      ["processPerSec", "process"],
    ] as const) {
      const b = best(k);
      figures.push(
        figure(`${what}, ${PEER_JOBS} jobs, beside SQLite queue packages`, mine[k], "jobs/s", {
          vs: [{ role: "reference", name: `best peer (${b.name} ${b.version})`, value: b[k] }],
        }),
      );
      targets.push({
        name: `${what} / the best SQLite queue package`,
        measured: mine[k] / b[k],
        op: ">=",
        bound: 1.5,
        unit: "x",
      });
    }
  }
  return {
    section: "queue",
    figures,
    targets,
    notes: failed,
  };
}

if (import.meta.main) await benchQueue();
