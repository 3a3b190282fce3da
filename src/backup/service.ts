import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { AppError } from "../errors/index.ts";
import { archiveName, type BackupProgress, createBackup, pruneBackups, removeLeftovers } from "./backup.ts";
import type { BackupResult } from "./plan.ts";

export interface BackupSettings {
  dataDir: string;
  masterKeyFile: string;
  /** Where archives are written (`backup_dir`). */
  dir: string;
  /** How many archives the nightly job keeps (`backup_keep`). */
  keep: number;
  /** Bytes per second an archive is written at most (`backup_max_rate`); 0: no cap. */
  maxBytesPerSecond: number;
}

/**
 * The running appliance's backups: one at a time, into `backup_dir` (POST /v1/backups and the
 * nightly job, docs/operations.md#backups).
 */
export class Backups {
  private running: Promise<BackupResult> | null = null;
  private cleaned = false;

  constructor(
    readonly settings: BackupSettings,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * Take one now; a second while one runs is a conflict (thrown at once, not through the promise).
   * `maxBytesPerSecond` overrides `backup_max_rate` for this one.
   */
  take(onProgress?: (p: BackupProgress) => void, opts: { maxBytesPerSecond?: number } = {}): Promise<BackupResult> {
    if (this.running) throw new AppError("conflict", "a backup is already running");
    const { dir } = this.settings;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Under the data dir's lock, no other backup of this appliance is under way: what is left is a dead one's.
    if (!this.cleaned) removeLeftovers(dir);
    this.cleaned = true;
    const started = performance.now();
    const run = createBackup({
      dataDir: this.settings.dataDir,
      masterKeyFile: this.settings.masterKeyFile,
      dest: join(dir, archiveName(this.clock.now())),
      maxBytesPerSecond: opts.maxBytesPerSecond ?? this.settings.maxBytesPerSecond,
      clock: this.clock,
      onProgress,
    }).then((r) => {
      this.log.info("backup written", {
        path: r.path,
        bytes: r.bytes,
        files: r.files,
        ms: Math.round(performance.now() - started),
        // Of which spent under backup_max_rate's pacing.
        paced_ms: r.pacedMs ?? 0,
        ...(r.missing.spool || r.missing.blobs
          ? { missing_spool_segments: r.missing.spool, missing_blobs: r.missing.blobs }
          : {}),
      });
      return r;
    });
    this.running = run;
    void run.then(
      () => (this.running = null),
      () => (this.running = null),
    );
    return run;
  }

  /** The nightly job's run: a backup, then the oldest beyond `backup_keep` removed. */
  async nightly(): Promise<{ result: BackupResult; pruned: string[] }> {
    const result = await this.take();
    const pruned = pruneBackups(this.settings.dir, this.settings.keep);
    if (pruned.length) this.log.info("old backups removed", { dir: this.settings.dir, removed: pruned });
    return { result, pruned };
  }
}
