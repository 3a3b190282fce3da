import type { Database } from "bun:sqlite";
import { join } from "node:path";
import { Queue, Worker, shutdownManager } from "bunqueue/client";
import pkg from "bunqueue/package.json" with { type: "json" };
// Not in bunqueue's exports map; imported by path so it is the same module
// instance (and so the same process-wide manager) that bunqueue/client uses.
import { getSharedManager } from "../../node_modules/bunqueue/dist/client/manager.js";
import { countdown, enqueueAll, payload, perSec, type PeerOpts, type PeerResult } from "./common.ts";

export type { PeerResult } from "./common.ts";

const CONCURRENCY = 50;
const PULL_BATCH = 100;

/**
 * bunqueue hard-codes `PRAGMA synchronous = NORMAL` (dist/infrastructure/persistence/schema.js)
 * and offers no option for it, so we reach its connection through protected fields
 * (QueueManager.storage.db) and raise it to FULL before any job is written.
 */
function forceFullSync(dataPath: string): void {
  const manager = getSharedManager(dataPath) as unknown as { storage: { db: Database } | null };
  const db = manager.storage?.db;
  if (!db) throw new Error("bunqueue: no SQLite storage (dataPath not applied?)");
  db.run("PRAGMA synchronous = FULL");
  const sync = db.query<{ synchronous: number }, []>("PRAGMA synchronous").get()?.synchronous;
  const journal = db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode;
  if (sync !== 2 || journal !== "wal") throw new Error(`bunqueue pragmas: ${journal}/${sync}`);
}

export async function runPeer(opts: PeerOpts): Promise<PeerResult> {
  const dataPath = join(opts.dir, "bunqueue.db");
  const queue = new Queue("bench", { embedded: true, dataPath });
  let worker: Worker | undefined;
  try {
    forceFullSync(dataPath);
    // Without durable:true, add() resolves before the row is written (100-job / 10 ms
    // write buffer). durable:true inserts in its own committed statement.
    const enqueuePerSec = await enqueueAll(opts, (i) => queue.add("bench", payload(i), { durable: true }));

    const all = countdown(opts.jobs);
    worker = new Worker("bench", async () => {}, {
      embedded: true,
      dataPath,
      concurrency: CONCURRENCY,
      batchSize: PULL_BATCH,
      autorun: false,
    });
    // Embedded workers ack directly (manager.ack -> UPDATE ... committed) before 'completed'.
    worker.on("completed", all.tick);
    const t0 = performance.now();
    worker.run();
    await all.done;
    const processPerSec = perSec(opts.jobs, performance.now() - t0);

    return {
      name: "bunqueue (embedded)",
      version: pkg.version,
      durability:
        "WAL + synchronous=FULL (forced on its private connection; library hard-codes NORMAL), add({durable:true})",
      enqueuePerSec,
      processPerSec,
      notes: `Worker concurrency=${CONCURRENCY}, batchSize=${PULL_BATCH}; embedded acks commit one job each; also journals 3 queue_events rows per job`,
    };
  } finally {
    await worker?.close();
    queue.close();
    shutdownManager();
  }
}
