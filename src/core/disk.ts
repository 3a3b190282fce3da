import { statfsSync } from "node:fs";

/** A free-space threshold: a share of the filesystem, or bytes. */
export type FreeSpace = { readonly percent: number } | { readonly bytes: number };

export interface DiskSpace {
  /** Bytes an unprivileged process may still write (statfs f_bavail). */
  free: number;
  /** Size of the filesystem. */
  total: number;
}

/** The free and total space of the filesystem that holds `dir`. */
export function diskSpace(dir: string): DiskSpace {
  const s = statfsSync(dir);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
}

/** A threshold in bytes, for a filesystem of `total` bytes. */
export const thresholdBytes = (t: FreeSpace, total: number): number =>
  "percent" in t ? Math.floor((total * t.percent) / 100) : t.bytes;

export type DiskLevel = "ok" | "warn" | "fail";

const describe = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;

/**
 * The data dir's free space against two thresholds (docs/operations.md#disk): below `warnFree`
 * /metrics and the log warn, below `failFree` /readyz fails, so a load balancer or an operator
 * acts before writes start failing. Each crossing is logged once, either way.
 */
export class DiskWatch {
  private level: DiskLevel = "ok";
  last: DiskSpace & { level: DiskLevel; warnAt: number; failAt: number } = {
    free: 0,
    total: 0,
    level: "ok",
    warnAt: 0,
    failAt: 0,
  };

  constructor(
    private readonly dir: string,
    private readonly limits: { warnFree: FreeSpace; failFree: FreeSpace },
    private readonly log: { warn(msg: string, f?: object): void; info(msg: string, f?: object): void },
    private readonly measure: (dir: string) => DiskSpace = diskSpace,
  ) {}

  /** Measure now; log a change of level. */
  sample(): DiskWatch["last"] {
    const space = this.measure(this.dir);
    const warnAt = thresholdBytes(this.limits.warnFree, space.total);
    const failAt = thresholdBytes(this.limits.failFree, space.total);
    const level: DiskLevel = space.free < failAt ? "fail" : space.free < warnAt ? "warn" : "ok";
    if (level !== this.level) {
      const fields = {
        dir: this.dir,
        free_bytes: space.free,
        total_bytes: space.total,
        warn_below: warnAt,
        fail_below: failAt,
      };
      if (level === "ok") this.log.info("disk space is above its thresholds again", fields);
      else
        this.log.warn(
          level === "fail"
            ? `disk almost full: ${describe(space.free)} free, below disk_fail_free: /readyz fails`
            : `disk filling up: ${describe(space.free)} free, below disk_warn_free`,
          fields,
        );
      this.level = level;
    }
    this.last = { ...space, level, warnAt, failAt };
    return this.last;
  }

  /** For /readyz: fails below `failFree`. */
  check(): { ok: boolean; detail?: string } {
    try {
      const s = this.sample();
      if (s.level === "fail")
        return {
          ok: false,
          detail: `${describe(s.free)} free on the data dir's disk, below disk_fail_free (${describe(s.failAt)})`,
        };
      return s.level === "warn" ? { ok: true, detail: `${describe(s.free)} free, below disk_warn_free` } : { ok: true };
    } catch (e) {
      return { ok: false, detail: `cannot read the data dir's free space: ${(e as Error).message}` };
    }
  }
}
