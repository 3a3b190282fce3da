/**
 * `npm run bench -- audit`: audit appends with the keyed hash chain and its checkpoints, beside plain inserts of the same
 * rows into a table of the same shape, in the same run, through the same group committer, with
 * the same 50 concurrent writers. Target: at least 50% of the plain rate.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkpointFile } from "../src/audit/anchor.ts";
import { chainKeysFrom } from "../src/audit/keys.ts";
import { openSqliteStorage } from "../src/store/index.ts";
import { enqueueAll } from "./peers/common.ts";
import { per1000, selfMeter } from "./measure.ts";
import { figure, type SectionResult } from "./report.ts";

const N = Number(process.env.BENCH_AUDIT_ENTRIES ?? 20_000);
const WRITERS = 50;
const ROUNDS = 3;

const entry = (i: number) => ({
  actor: "token:tok_01M80MPAZ9E8MRS0YPNR25EEF9",
  tenant: "beta",
  action: "resource.update",
  target: `beta/endpoints/e${i}`,
  decision: null,
  details: { resource_version: i, summary: { created: 1, updated: 2 } },
});

async function run(chained: boolean): Promise<{ rate: number; cpu?: number; rss?: number }> {
  const meter = selfMeter();
  const dir = mkdtempSync(join(tmpdir(), "agentowl-bench-audit-"));
  try {
    const s = openSqliteStorage({ dir });
    // Keyed and anchored, as the appliance runs it (HMAC links, a checkpoint every 1,000 entries).
    if (chained)
      s.audit.anchor({
        keys: chainKeysFrom(Buffer.alloc(32, 1)),
        file: checkpointFile(dir),
        everyEntries: 1000,
        everyMs: 60_000,
      });
    // An exact copy of audit_log's table and indexes (not its append-only triggers, which fire on
    // UPDATE/DELETE only): the difference measured is the chain, nothing else.
    const ddl = s.handle.sqlite
      .query<{ sql: string }, []>(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_log' AND type IN ('table', 'index') AND sql IS NOT NULL",
      )
      .all();
    for (const { sql } of ddl)
      s.handle.sqlite.run(sql.replaceAll("audit_log", "audit_plain").replace(/`audit_(tenant|action)`/g, "`plain_$1`"));
    const plain = s.handle.sqlite.prepare(
      "INSERT INTO audit_plain (seq, at, actor, tenant, action, target, decision, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    let seq = 0;
    const fixedHash = "0".repeat(64);
    const rate = await enqueueAll({ dir, jobs: N, producers: WRITERS }, (i) =>
      chained
        ? s.audit.append(entry(i))
        : s.committer.run((tx) => {
            const e = entry(i);
            plain.run(
              ++seq,
              tx.now,
              e.actor,
              e.tenant,
              e.action,
              e.target,
              e.decision,
              JSON.stringify(e.details),
              fixedHash,
              fixedHash,
            );
          }),
    );
    if (chained && !(await s.audit.verify()).ok) throw new Error("the benchmark's chain does not verify");
    await s.close();
    return { rate, cpu: per1000(meter.cpuMs(), N), rss: meter.peakRssMiB() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchAudit(): Promise<SectionResult> {
  const runs: { chained: Awaited<ReturnType<typeof run>>; plain: Awaited<ReturnType<typeof run>> }[] = [];
  for (let r = 0; r < ROUNDS; r++) runs.push({ plain: await run(false), chained: await run(true) });
  const rounds = runs.map((r) => ({ chained: r.chained.rate, plain: r.plain.rate }));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const cpu = (k: "chained" | "plain") => {
    const xs = runs.map((r) => r[k].cpu).filter((x) => x !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  const chained = median(rounds.map((r) => r.chained));
  const plain = median(rounds.map((r) => r.plain));
  console.log(`audit appends, ${N} entries, ${WRITERS} concurrent writers, group commit, median of ${ROUNDS} rounds`);
  for (const [i, r] of rounds.entries())
    console.log(
      `   round ${i + 1}: chained ${r.chained.toLocaleString("en-US")}/s, ` +
        `plain ${r.plain.toLocaleString("en-US")}/s, ${((100 * r.chained) / r.plain).toFixed(0)}%`,
    );
  console.log(`   hash-chained appends: ${chained.toLocaleString("en-US")}/s`);
  console.log(`   plain inserts of the same rows: ${plain.toLocaleString("en-US")}/s`);
  console.log(`   chained / plain: ${((100 * chained) / plain).toFixed(0)}% (target >= 50%)`);
  return {
    section: "audit",
    figures: [
      figure("plain inserts of the same rows (reference)", plain, "entries/s", { cpuMsPer1000: cpu("plain") }),
      figure("hash-chained, anchored appends", chained, "entries/s", {
        cpuMsPer1000: cpu("chained"),
        peakRssMiB: runs[0]!.chained.rss,
        vs: [{ role: "reference", name: "plain inserts", value: plain }],
      }),
    ],
    targets: [{ name: "chained / plain", measured: (100 * chained) / plain, op: ">=", bound: 50, unit: "%" }],
    notes: [],
  };
}

if (import.meta.main) await benchAudit();
