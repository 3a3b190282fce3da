import { readlinkSync } from "node:fs";
import { setPriority } from "node:os";
import type { Clock } from "../core/clock.ts";
import type { BackupRequest, BackupResult } from "./plan.ts";
import { runBackup } from "./plan.ts";
import { RateLimit } from "./throttle.ts";

/** The rate is over elapsed time: a clock that never steps. */
const monotonic: Clock = { now: () => performance.now() };

/**
 * The backup thread (./backup.ts): snapshot, checksums and the archive run here, on their own
 * SQLite connection, so the event loop that serves ingress only receives progress messages.
 */
declare const self: Worker;

export type WorkerReport =
  | { kind: "progress"; done: number; total: number }
  | { kind: "phase"; name: string }
  | { kind: "done"; result: BackupResult }
  | { kind: "error"; message: string };

/**
 * This thread at the lowest CPU priority (nice 19; Linux lets a thread have its own): on a small
 * machine the backup then takes the CPU the event loop, the committer's fsyncs and the parsers
 * leave, and ingest keeps its rate. Elsewhere the thread keeps the process's priority.
 */
function lowerPriority(): void {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, 19);
  } catch {
    // No /proc (macOS), or not allowed: the backup runs at the process's priority.
  }
}

self.onmessage = ({ data }: MessageEvent<BackupRequest>) => {
  lowerPriority();
  const limit = new RateLimit(data.maxBytesPerSecond, monotonic, (ms) => Bun.sleepSync(ms));
  let last = 0;
  try {
    const result = runBackup(
      data,
      (done, total) => {
        // A message per 1/200 of the archive at most: the main thread decides what to print.
        if (done - last < total / 200 && done < total) return;
        last = done;
        self.postMessage({ kind: "progress", done, total } satisfies WorkerReport);
      },
      (name) => self.postMessage({ kind: "phase", name } satisfies WorkerReport),
      (bytes) => limit.take(bytes),
    );
    self.postMessage({
      kind: "done",
      result: { ...result, pacedMs: Math.round(limit.sleptMs) },
    } satisfies WorkerReport);
  } catch (e) {
    self.postMessage({
      kind: "error",
      message: String((e as Error)?.message ?? e).slice(0, 500),
    } satisfies WorkerReport);
  }
};
