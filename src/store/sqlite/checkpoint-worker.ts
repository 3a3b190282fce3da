import { Database, type Statement } from "bun:sqlite";
import type { CheckpointReport, CheckpointStart } from "./checkpointer.ts";

/**
 * The WAL checkpointer thread (src/store/sqlite/checkpointer.ts): its own connection to the
 * database, a PASSIVE checkpoint every `intervalMs`. PASSIVE never waits for the writer or a
 * reader; it copies what it can, syncing the WAL before and the database after.
 */
declare const self: Worker;

let db: Database | null = null;
let passive: Statement<{ busy: number; log: number; checkpointed: number }, []> | null = null;
let timer: Timer | null = null;

function checkpoint(): void {
  if (!passive) return;
  try {
    const row = passive.get();
    self.postMessage({
      kind: "checkpointed",
      frames: row?.log ?? 0,
      copied: row?.checkpointed ?? 0,
    } satisfies CheckpointReport);
  } catch (e) {
    self.postMessage({
      kind: "error",
      message: String((e as Error)?.message ?? e).slice(0, 200),
    } satisfies CheckpointReport);
  }
}

self.onmessage = ({ data }: MessageEvent<CheckpointStart | { kind: "stop" }>) => {
  if (data.kind === "start") {
    db = new Database(data.path, { readwrite: true, create: false });
    db.run("PRAGMA busy_timeout = 0");
    // The checkpoint's own syncs: the WAL before copying, the database after.
    db.run("PRAGMA synchronous = FULL");
    passive = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
    timer = setInterval(checkpoint, data.intervalMs);
    return;
  }
  if (timer) clearInterval(timer);
  timer = null;
  // Finalized first: a connection closed with a live statement lingers, locks and all.
  passive?.finalize();
  passive = null;
  db?.close(true);
  db = null;
  self.postMessage({ kind: "stopped" } satisfies CheckpointReport);
};
