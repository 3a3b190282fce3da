// Smoke run: node_modules/.bin/bun bench/peers/try.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PeerOpts, PeerResult } from "./common.ts";
import { runPeer as bunqueue } from "./bunqueue.ts";
import { runPeer as liteque } from "./liteque.ts";
import { runPeer as plainjob } from "./plainjob.ts";
import { runRawSqlite } from "./raw-sqlite.ts";

const JOBS = 5000;
const PRODUCERS = 50;

async function inTempDir<T>(tag: string, fn: (opts: PeerOpts) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `peer-${tag}-`));
  try {
    return await fn({ dir, jobs: JOBS, producers: PRODUCERS });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: PeerResult[] = [];
for (const [tag, run] of [["bunqueue", bunqueue], ["plainjob", plainjob], ["liteque", liteque]] as const) {
  const t0 = performance.now();
  const r = await inTempDir(tag, run);
  rows.push(r);
  console.error(`${tag}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
const raw = await inTempDir("raw", runRawSqlite);

console.log(`\njobs=${JOBS} producers=${PRODUCERS}\n`);
console.table(
  rows.map((r) => ({
    peer: `${r.name} ${r.version}`,
    "enqueue/s": r.enqueuePerSec,
    "process/s": r.processPerSec,
  })),
);
console.log(
  `raw bun:sqlite (WAL, synchronous=FULL): ${raw.perItemPerSec} rows/s one txn per row, ` +
    `${raw.batchedPerSec} rows/s in 1000-row txns\n`,
);
for (const r of rows) {
  console.log(`${r.name}: ${r.durability}`);
  if (r.notes) console.log(`  note: ${r.notes}`);
}
