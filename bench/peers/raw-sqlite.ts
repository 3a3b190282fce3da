import { Database } from "bun:sqlite";
import { join } from "node:path";
import { payload, perSec, type PeerOpts } from "./common.ts";

const PER_ITEM_CAP = 5000;
const BATCH = 1000;

/**
 * Bare bun:sqlite ceiling on the same disk and durability (WAL, synchronous=FULL):
 * (a) one autocommit INSERT per row, (b) the same rows in 1000-row transactions.
 * bun:sqlite is synchronous, so `producers` cannot add concurrency here.
 */
export async function runRawSqlite(opts: PeerOpts): Promise<{ perItemPerSec: number; batchedPerSec: number }> {
  const db = new Database(join(opts.dir, "raw.db"), { create: true, strict: true });
  try {
    db.run("PRAGMA journal_mode = WAL");
    db.run("PRAGMA synchronous = FULL");
    db.run("CREATE TABLE per_item (id TEXT PRIMARY KEY, payload TEXT NOT NULL)");
    db.run("CREATE TABLE batched (id TEXT PRIMARY KEY, payload TEXT NOT NULL)");
    const rows = Array.from({ length: opts.jobs }, (_, i) => ({
      id: crypto.randomUUID(),
      payload: JSON.stringify(payload(i)),
    }));

    const one = db.query("INSERT INTO per_item (id, payload) VALUES ($id, $payload)");
    const n = Math.min(opts.jobs, PER_ITEM_CAP);
    let t0 = performance.now();
    for (let i = 0; i < n; i++) one.run(rows[i]!);
    const perItemPerSec = perSec(n, performance.now() - t0);

    const many = db.query("INSERT INTO batched (id, payload) VALUES ($id, $payload)");
    const insertChunk = db.transaction((chunk: typeof rows) => {
      for (const row of chunk) many.run(row);
    });
    t0 = performance.now();
    for (let i = 0; i < rows.length; i += BATCH) insertChunk(rows.slice(i, i + BATCH));
    const batchedPerSec = perSec(rows.length, performance.now() - t0);

    return { perItemPerSec, batchedPerSec };
  } finally {
    db.close();
  }
}
