import { isStorageUnavailable } from "../../errors/index.ts";
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { type Clock, systemClock } from "../../core/clock.ts";
import { GroupFsync } from "../../core/group-fsync.ts";

/**
 * The raw-message spool (docs/architecture.md, §3.1): append-only segment files in `<data>/spool/`, made
 * durable by group fsync. A message is appended to the current segment and its promise resolves
 * once an fdatasync that started after the write has finished; every message appended while one
 * fdatasync runs shares the next one. A separate fsynced file per message costs about 0.5 ms of
 * disk time each on a NUC-class SSD (about 2,000 files/s); one fdatasync per group does not.
 *
 * A message is addressed by (segment, offset, length); the database row that references it is
 * committed only after the spool promise resolves, so no row ever points at bytes that are not
 * on disk. Bytes whose row never committed (a crash in between) are unreachable garbage that
 * the retention purge removes with their segment; the client was never told 250 and re-sends.
 *
 * A new segment is started at every start-up, every SEGMENT_MAX_BYTES and every
 * SEGMENT_MAX_AGE_MS (so retention can delete whole files), and after any write or sync error:
 * after a failed fsync the kernel may have dropped the dirty pages, so the file is not trusted
 * with more writes.
 */

export interface SpoolRef {
  segment: string;
  offset: number;
  length: number;
}

/**
 * What the SMTP pipeline needs of a spool: the segment files below (one node), or the
 * database's when several nodes share it (Storage.spool: a message is committed, not fsynced,
 * before its row, and any node reads it).
 */
export interface MessageSpool {
  /** Resolves once the bytes are durable. */
  append(bytes: Uint8Array): Promise<SpoolRef>;
  /** The bytes of one spooled message (null when retention purged them). */
  read(ref: SpoolRef): Uint8Array | null | Promise<Uint8Array | null>;
  /** Delete what was written before `cutoff` (ms). */
  purge(cutoff: number): { segments: number; bytes: number } | Promise<{ segments: number; bytes: number }>;
  /** Bytes spooled (for /metrics and the dashboard). */
  size(): number;
  close(): Promise<void>;
}

/** The disk cannot take the message now (full, read-only, failing): SMTP answers 452 4.3.1. */
export class SpoolUnavailableError extends Error {
  override readonly name = "SpoolUnavailableError";
  constructor(
    readonly code: string,
    cause: unknown,
  ) {
    super(`the spool cannot store messages now (${code})`, { cause });
  }
}

/** Error codes that mean "this disk cannot take writes now", as opposed to a bug. */

const SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
const SEGMENT_MAX_AGE_MS = 60 * 60 * 1000;
/** Creation time (ms, zero-padded so names sort by age) and 32 random bits. */
const SEGMENT_NAME = /^\d{15}-[0-9a-f]{8}\.spool$/;

interface Segment {
  name: string;
  fd: number;
  size: number;
  createdAt: number;
  sync: GroupFsync;
  /** No more appends: close the file once the last sync is done. */
  retired: boolean;
}

function unavailable(e: unknown): Error {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code && isStorageUnavailable(e) ? new SpoolUnavailableError(code, e) : (e as Error);
}

export interface SpoolStats {
  appended: number;
}

export class Spool implements MessageSpool {
  private current: Segment | null = null;
  readonly stats: SpoolStats = { appended: 0 };
  private syncsOfClosed = 0;

  /** fdatasyncs so far, every segment's. */
  get syncs(): number {
    return this.syncsOfClosed + (this.current?.sync.syncs ?? 0);
  }

  constructor(
    readonly dir: string,
    private readonly clock: Clock = systemClock,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** Append one message; resolves when it is on disk (file data and, for a new segment, the directory entry). */
  append(bytes: Uint8Array): Promise<SpoolRef> {
    let seg: Segment;
    try {
      seg = this.writable(bytes.length);
    } catch (e) {
      return Promise.reject(unavailable(e));
    }
    const offset = seg.size;
    try {
      let done = 0;
      while (done < bytes.length) done += writeSync(seg.fd, bytes, done, bytes.length - done, offset + done);
    } catch (e) {
      // Leave no half-message behind, and start a fresh segment for the next one.
      try {
        ftruncateSync(seg.fd, offset);
      } catch {
        // the segment is retired below either way
      }
      this.retire(seg);
      return Promise.reject(unavailable(e));
    }
    seg.size += bytes.length;
    this.stats.appended++;
    return seg.sync.sync().then(
      () => {
        this.closeIfIdle(seg);
        return { segment: seg.name, offset, length: bytes.length };
      },
      (e) => Promise.reject(unavailable(e)),
    );
  }

  /** The bytes of one spooled message (null when its segment was purged). */
  read(ref: SpoolRef): Uint8Array | null {
    if (!SEGMENT_NAME.test(ref.segment)) throw new Error(`not a spool segment: ${ref.segment}`);
    let fd: number;
    try {
      fd = openSync(join(this.dir, ref.segment), "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
    try {
      const out = new Uint8Array(ref.length);
      let done = 0;
      while (done < ref.length) {
        const n = readSync(fd, out, done, ref.length - done, ref.offset + done);
        if (n === 0) throw new Error(`spool segment ${ref.segment} ends before offset ${ref.offset + ref.length}`);
        done += n;
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }

  /** Delete segments last written before `cutoff` (ms), except the one being written. */
  purge(cutoff: number): { segments: number; bytes: number } {
    let segments = 0;
    let bytes = 0;
    for (const name of readdirSync(this.dir)) {
      if (!SEGMENT_NAME.test(name) || name === this.current?.name) continue;
      const path = join(this.dir, name);
      const st = statSync(path);
      if (st.mtimeMs >= cutoff) continue;
      unlinkSync(path);
      segments++;
      bytes += st.size;
    }
    return { segments, bytes };
  }

  /**
   * Delete the segments `referenced` does not name, except the one being written. Only at
   * start-up, under the data dir's lock, before any append: then a segment no row names holds
   * only messages whose commit never happened, none of them acknowledged.
   */
  removeUnreferenced(referenced: ReadonlySet<string>): { segments: number; bytes: number } {
    let segments = 0;
    let bytes = 0;
    for (const name of readdirSync(this.dir)) {
      if (!SEGMENT_NAME.test(name) || name === this.current?.name || referenced.has(name)) continue;
      const path = join(this.dir, name);
      bytes += statSync(path).size;
      unlinkSync(path);
      segments++;
    }
    return { segments, bytes };
  }

  /** Bytes in the spool directory (for /metrics). */
  size(): number {
    let total = 0;
    for (const name of readdirSync(this.dir)) if (SEGMENT_NAME.test(name)) total += statSync(join(this.dir, name)).size;
    return total;
  }

  /** Wait for every pending sync, then close the current segment. */
  async close(): Promise<void> {
    const seg = this.current;
    this.current = null;
    if (!seg) return;
    if (!seg.sync.idle) await seg.sync.sync().catch(() => {});
    seg.retired = true;
    this.closeIfIdle(seg);
  }

  private writable(length: number): Segment {
    const seg = this.current;
    if (seg && seg.size + length <= SEGMENT_MAX_BYTES && this.clock.now() - seg.createdAt < SEGMENT_MAX_AGE_MS)
      return seg;
    if (seg) this.retire(seg);
    return this.open();
  }

  private open(): Segment {
    const createdAt = this.clock.now();
    const name = `${String(createdAt).padStart(15, "0")}-${randomBytes(4).toString("hex")}.spool`;
    const fd = openSync(join(this.dir, name), "wx", 0o600);
    try {
      // The new file's directory entry must be durable before any message in it is acknowledged.
      const dir = openSync(this.dir, "r");
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    const seg: Segment = {
      name,
      fd,
      size: 0,
      createdAt,
      retired: false,
      sync: new GroupFsync(
        () => seg.fd,
        () => this.retire(seg),
      ),
    };
    this.current = seg;
    return seg;
  }

  private retire(seg: Segment): void {
    seg.retired = true;
    if (this.current === seg) this.current = null;
    this.closeIfIdle(seg);
  }

  private closeIfIdle(seg: Segment): void {
    if (seg.retired && seg.sync.idle && seg.fd >= 0) {
      closeSync(seg.fd);
      seg.fd = -1;
      this.syncsOfClosed += seg.sync.syncs;
    }
  }
}
