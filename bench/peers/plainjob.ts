import { Database } from "bun:sqlite";
import { join } from "node:path";
import { bun, defineQueue, defineWorker, type Logger } from "plainjob";
import pkg from "plainjob/package.json" with { type: "json" };
import { countdown, enqueueAll, payload, perSec, type PeerOpts, type PeerResult } from "./common.ts";

export type { PeerResult } from "./common.ts";

const silent: Logger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

export async function runPeer(opts: PeerOpts): Promise<PeerResult> {
  const db = new Database(join(opts.dir, "plainjob.db"), { create: true, strict: true });
  // We own the handle, so no cast needed. defineQueue sets journal_mode=WAL and
  // synchronous=1 (NORMAL) on it; we raise that to FULL afterwards.
  const queue = defineQueue({ connection: bun(db), logger: silent });
  db.run("PRAGMA synchronous = FULL");
  const sync = db.query<{ synchronous: number }, []>("PRAGMA synchronous").get()?.synchronous;
  const journal = db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode;
  if (sync !== 2 || journal !== "wal") throw new Error(`plainjob pragmas: ${journal}/${sync}`);

  try {
    // queue.add is a synchronous autocommit INSERT: committed when it returns.
    const enqueuePerSec = await enqueueAll(opts, (i) => queue.add("bench", payload(i)));

    // One worker claims (BEGIN IMMEDIATE select+update) and marks done (autocommit UPDATE)
    // one job at a time; plainjob has no in-process concurrency option.
    const all = countdown(opts.jobs);
    const worker = defineWorker("bench", async () => {}, {
      queue,
      logger: silent,
      pollIntervall: 10,
      onCompleted: all.tick, // called after markJobAsDone has committed
    });
    const t0 = performance.now();
    const running = worker.start();
    await all.done;
    const processPerSec = perSec(opts.jobs, performance.now() - t0);
    await worker.stop();
    await running;

    return {
      name: "plainjob",
      version: pkg.version,
      durability: "WAL + synchronous=FULL (own bun:sqlite handle; library default is NORMAL)",
      enqueuePerSec,
      processPerSec,
      notes: "single in-process worker (scaling is documented as multi-process); 2 commits per job processed",
    };
  } finally {
    queue.close(); // also closes db
  }
}
