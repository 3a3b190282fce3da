// Runs under Node (liteque needs better-sqlite3, which does not load in Bun).
// Usage: node liteque-node.mjs '{"dir":"/tmp/x","jobs":5000,"producers":50}'
// Prints one JSON line: { version, sync, journal, enqueuePerSec, processPerSec }.
import { createRequire } from "node:module";
import { join } from "node:path";
import { Runner, SqliteQueue, buildDBClient } from "liteque";

const CONCURRENCY = 50;
const { dir, jobs, producers } = JSON.parse(process.argv[2]);
const payload = (i) => ({ n: i, body: "x".repeat(32) });
const perSec = (n, ms) => Math.round((n * 1000) / ms);

// liteque 0.8.0 passes an async callback to better-sqlite3's transaction(); since
// better-sqlite3 11.10 (WiseLibs/better-sqlite3#1364) that throws "Transaction function
// cannot return a promise", so every dequeue fails (karakeep-app/karakeep#1594).
// Restore the pre-11.10 behaviour on this connection only: BEGIN, call fn, COMMIT,
// return its result. As before 11.10, liteque's queries then run after the COMMIT.
function legacyTransactions(sqlite) {
  sqlite.transaction = (fn) => {
    const wrap =
      (begin) =>
      (...args) => {
        sqlite.exec(begin);
        try {
          const result = fn(...args);
          sqlite.exec("COMMIT");
          return result;
        } catch (error) {
          if (sqlite.inTransaction) sqlite.exec("ROLLBACK");
          throw error;
        }
      };
    return Object.assign(wrap("BEGIN"), {
      deferred: wrap("BEGIN DEFERRED"),
      immediate: wrap("BEGIN IMMEDIATE"),
      exclusive: wrap("BEGIN EXCLUSIVE"),
    });
  };
}

const db = buildDBClient(join(dir, "liteque.db"), { runMigrations: true });
// buildDBClient sets journal_mode=WAL, synchronous=NORMAL and exposes no option for
// it; drizzle keeps the better-sqlite3 handle at db.session.client.
const sqlite = db.session.client;
sqlite.pragma("synchronous = FULL");
legacyTransactions(sqlite);

const queue = new SqliteQueue("bench", db, {
  defaultJobArgs: { numRetries: 0 },
  keepFailedJobs: false,
});

let next = 0;
let t0 = performance.now();
await Promise.all(
  Array.from({ length: producers }, async () => {
    while (next < jobs) {
      const i = next++;
      await queue.enqueue(payload(i)); // autocommit INSERT ... RETURNING
    }
  }),
);
const enqueuePerSec = perSec(jobs, performance.now() - t0);

// runUntilEmpty resolves once every job's finalize (DELETE, autocommit) has run.
const runner = new Runner(
  queue,
  { run: async () => {} },
  {
    concurrency: CONCURRENCY,
    pollIntervalMs: 10,
    timeoutSecs: 60,
  },
);
t0 = performance.now();
await runner.runUntilEmpty();
const processPerSec = perSec(jobs, performance.now() - t0);

const left = await queue.stats();
if (left.pending + left.running + left.pending_retry + left.failed !== 0) {
  throw new Error(`liteque left jobs behind: ${JSON.stringify(left)}`);
}
const require = createRequire(import.meta.url);
console.log(
  JSON.stringify({
    version: require("liteque/package.json").version,
    sync: sqlite.pragma("synchronous", { simple: true }),
    journal: sqlite.pragma("journal_mode", { simple: true }),
    enqueuePerSec,
    processPerSec,
  }),
);
sqlite.close();
// Runner.runOnce leaves a timeoutSecs timer per job; don't wait for them.
process.exit(0);
