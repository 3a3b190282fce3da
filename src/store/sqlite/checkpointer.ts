import type { Database } from "bun:sqlite";
import { workerPath } from "../../core/worker-path.ts";

/** The messages between the storage and its checkpoint worker. */
export interface CheckpointStart {
  kind: "start";
  path: string;
  intervalMs: number;
}

export type CheckpointReport =
  | { kind: "checkpointed"; frames: number; copied: number }
  | { kind: "error"; message: string }
  | { kind: "stopped" };

/** Pages of WAL past which the committing connection checkpoints itself (4 KiB pages: 40 MiB). */
export const BACKSTOP_PAGES = 10_000;
const DEFAULT_AUTOCHECKPOINT = 1000;
const WORKER_URL = workerPath("store/sqlite/checkpoint-worker.ts");

/**
 * WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside the COMMIT that
 * crossed the WAL's size limit, on the committing thread: it copies a thousand pages into the
 * database and syncs both files while nothing else runs (measured: a sixth of COMMIT's time
 * under a steady load of webhook-sized events). Here a worker thread with its own connection
 * checkpoints in the background instead, and the committing connection keeps an automatic
 * checkpoint only as a backstop with a far higher limit: it then finds the WAL already copied
 * but for the last few frames, and restarting the WAL from its start (which needs everything
 * copied) costs it little.
 * Should the worker die, the backstop goes back to SQLite's default.
 */
export class BackgroundCheckpointer {
  private worker: Worker | null = null;
  /** What the worker's last checkpoint found: frames in the WAL, and how many are in the database. */
  last: { frames: number; copied: number } | null = null;

  constructor(
    private readonly sqlite: Database,
    private readonly path: string,
    private readonly onError: (message: string) => void = () => {},
  ) {}

  start(intervalMs = 100): void {
    if (this.worker) return;
    const worker = new Worker(WORKER_URL);
    worker.unref();
    worker.onmessage = ({ data }: MessageEvent<CheckpointReport>) => {
      if (data.kind === "checkpointed") {
        this.last = { frames: data.frames, copied: data.copied };
      } else if (data.kind === "error") {
        this.onError(data.message);
      }
    };
    const lost = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.sqlite.run(`PRAGMA wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT}`);
      this.onError(`checkpoint worker ${why}; checkpoints run on commit again`);
    };
    worker.onerror = (e) => lost(`crashed: ${e.message.slice(0, 200)}`);
    worker.addEventListener("close", () => lost("exited"));
    worker.postMessage({ kind: "start", path: this.path, intervalMs } satisfies CheckpointStart);
    this.sqlite.run(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`);
    this.worker = worker;
  }

  /** Close the worker's connection before the storage closes its own (then the WAL can go). */
  async stop(timeoutMs = 2000): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = null;
    const stopped = new Promise<void>((resolve) => {
      worker.onmessage = ({ data }: MessageEvent<CheckpointReport>) => data.kind === "stopped" && resolve();
      worker.addEventListener("close", () => resolve());
    });
    worker.postMessage({ kind: "stop" });
    await Promise.race([stopped, Bun.sleep(timeoutMs)]);
    worker.terminate();
    this.sqlite.run(`PRAGMA wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT}`);
  }
}
