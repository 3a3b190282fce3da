/**
 * The worker thread behind SyncConnection (./bridge.ts): it owns one PostgreSQL connection, runs
 * each batch of statements the main thread hands it, in order, and wakes the main thread, which
 * waits with Atomics.wait. docs/architecture.md#storage-contract-and-postgresql says why.
 */
import { SQL } from "bun";
import { parentPort, workerData } from "node:worker_threads";
import type { BridgeReply, BridgeRequest } from "./bridge.ts";

const { url, flag, port, connection } = workerData as {
  url: string;
  flag: Int32Array;
  port: MessagePort;
  connection: Record<string, string>;
};

const sql = new SQL(url, { max: 1, connection, idleTimeout: 0 });
let reserved: Awaited<ReturnType<SQL["reserve"]>> | null = null;

function reply(r: BridgeReply): void {
  port.postMessage(r);
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
}

port.on("message", async (req: BridgeRequest) => {
  const results: unknown[][] = [];
  try {
    const conn = (reserved ??= await sql.reserve());
    // Sent together (pipelined: one round trip's wait for the lot, not one each), answered in
    // order. A batch is a transaction's statements: after a failure PostgreSQL refuses the rest
    // (25P02) and a COMMIT among them rolls back; the first failure is the one reported.
    const runs = req.ops.map((op) =>
      conn.unsafe(op.text, op.params as unknown[]).then(
        (rows) => ({ rows: Array.from(rows) as unknown[], error: null }),
        (e: unknown) => ({ rows: [] as unknown[], error: e }),
      ),
    );
    for (let i = 0; i < runs.length; i++) {
      const run = await runs[i]!;
      if (run.error !== null) {
        const err = run.error as { message?: string; errno?: string; code?: string };
        await Promise.all(runs.slice(i + 1));
        reply({
          results,
          error: { index: i, message: String(err.message ?? run.error), code: err.errno ?? err.code ?? null },
        });
        return;
      }
      results.push(run.rows);
    }
    reply({ results, error: null });
  } catch (e) {
    reply({ results, error: { index: results.length, message: String((e as Error).message ?? e), code: null } });
  }
});

parentPort?.on("message", async (m: string) => {
  if (m !== "close") return;
  try {
    reserved?.release();
    await sql.close({ timeout: 5 });
  } finally {
    parentPort?.postMessage("closed");
  }
});
