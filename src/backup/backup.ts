import { existsSync, readdirSync, rmSync, unlinkSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { type Clock, systemClock } from "../core/clock.ts";
import { workerPath } from "../core/worker-path.ts";
import { AppError } from "../errors/index.ts";
import { VERSION } from "../version.ts";
import type { BackupRequest, BackupResult } from "./plan.ts";
import type { WorkerReport } from "./worker.ts";

const WORKER_URL = workerPath("backup/worker.ts");

/** `agentowl-20261207T031700Z.tar`: sorts by time; the nightly job prunes only names like it. */
export const archiveName = (at: number): string =>
  `agentowl-${new Date(at)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}.tar`;
const ARCHIVE_NAME = /^agentowl-\d{8}T\d{6}Z\.tar$/;

export interface BackupProgress {
  phase?: string;
  done?: number;
  total?: number;
}

/**
 * Take a backup of `dataDir` into `dest` on a worker thread (./worker.ts; docs/operations.md#backups).
 * Safe while a server serves the data dir: the database is read through its own connection in one
 * read transaction. Resolves once the archive is whole and fsynced.
 */
export function createBackup(opts: {
  dataDir: string;
  masterKeyFile: string;
  dest: string;
  /** Bytes per second the archive is written at most (`backup_max_rate`); 0 or absent: no cap. */
  maxBytesPerSecond?: number;
  clock?: Clock;
  onProgress?: (p: BackupProgress) => void;
}): Promise<BackupResult> {
  const dest = resolve(opts.dest);
  if (existsSync(dest)) return Promise.reject(new AppError("conflict", `${dest} exists; name another file`));
  if (!existsSync(join(opts.dataDir, "agentowl.db")))
    return Promise.reject(new AppError("not_found", `no database in ${opts.dataDir}: nothing to back up`));
  const createdAt = new Date((opts.clock ?? systemClock).now()).toISOString();
  const req: BackupRequest = {
    dataDir: resolve(opts.dataDir),
    masterKeyFile: resolve(opts.masterKeyFile),
    dest,
    staging: join(dirname(dest), `.${basename(dest)}.staging`),
    appVersion: VERSION,
    createdAt,
    maxBytesPerSecond: opts.maxBytesPerSecond ?? 0,
  };
  return new Promise<BackupResult>((done, fail) => {
    const worker = new Worker(WORKER_URL);
    const end = (f: () => void) => {
      worker.terminate();
      f();
    };
    worker.onmessage = ({ data }: MessageEvent<WorkerReport>) => {
      if (data.kind === "progress") opts.onProgress?.({ done: data.done, total: data.total });
      else if (data.kind === "phase") opts.onProgress?.({ phase: data.name });
      else if (data.kind === "done") end(() => done(data.result));
      else end(() => fail(new AppError("internal", `backup failed: ${data.message}`)));
    };
    worker.onerror = (e) => end(() => fail(new AppError("internal", `backup worker crashed: ${e.message}`)));
    worker.postMessage(req);
  });
}

/** Keep the newest `keep` archives of `dir` made by the nightly job (by name); returns those removed. */
export function pruneBackups(dir: string, keep: number): string[] {
  if (!existsSync(dir)) return [];
  const names = readdirSync(dir)
    .filter((n) => ARCHIVE_NAME.test(n))
    .sort()
    .reverse();
  const removed: string[] = [];
  for (const n of names.slice(Math.max(0, keep))) {
    unlinkSync(join(dir, n));
    removed.push(n);
  }
  return removed;
}

/** What a backup that died (a crash, a kill) left in `dir`: its partial archive and staging folder. */
export function removeLeftovers(dir: string): void {
  if (!existsSync(dir)) return;
  for (const n of readdirSync(dir))
    if (n.endsWith(".tar.partial") || (n.startsWith(".") && n.endsWith(".staging")))
      rmSync(join(dir, n), { recursive: true, force: true });
}
