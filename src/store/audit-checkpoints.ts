import {
  chmodSync,
  closeSync,
  existsSync,
  fsync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  truncateSync,
  write,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { canonicalJson } from "./audit-chain.ts";

/**
 * Signed checkpoints of the audit chain (guarantee 10 (docs/guarantees.md)): the chain's head anchored outside its table.
 * One JSON line per checkpoint, appended to `<data dir>/audit/checkpoints.jsonl` (0600) and
 * fsynced, each signed with HMAC-SHA256 under the chain's checkpoint key:
 *
 *   {"at":…,"head":"…","legacy_through":0,"seq":1200,"sig":"…","v":1}
 *
 * `seq` is the number of entries the checkpoint covers (the chain has no gaps, so it is also the
 * last one's seq) and `head` that entry's hash. `legacy_through` is the last entry written before
 * the chain was keyed (0 on an appliance that started keyed); the first line of a file is always
 * the anchor at that position, so a file recreated later does not start there and says so.
 * After retention pruned the start of the log, each line also carries `pruned_through` and
 * `pruned_head` (docs/operations.md#retention): verification starts from that signed link.
 * Someone who can write the database can delete rows, but cannot write a checkpoint that agrees.
 */

export interface Checkpoint {
  seq: number;
  head: string;
  /** Milliseconds since the epoch. */
  at: number;
  legacyThrough: number;
  /**
   * Entries 1 to `prunedThrough` left the table (retention): the log starts after them, and
   * `prunedHead` is the hash of entry `prunedThrough`, the link the first kept entry must carry.
   * Absent (0) on a log never pruned, and then not part of the signed bytes.
   */
  prunedThrough?: number;
  prunedHead?: string;
}

const VERSION = 1;
const HEX64 = /^[0-9a-f]{64}$/;

const fields = (cp: Checkpoint) => ({
  v: VERSION,
  seq: cp.seq,
  head: cp.head,
  at: cp.at,
  legacy_through: cp.legacyThrough,
  ...(cp.prunedThrough ? { pruned_through: cp.prunedThrough, pruned_head: cp.prunedHead } : {}),
});

const signed = (cp: Checkpoint) => canonicalJson(fields(cp));

export function signCheckpoint(key: Buffer, cp: Checkpoint): string {
  return new Bun.CryptoHasher("sha256", key).update(signed(cp)).digest("hex");
}

/** The line written for a checkpoint, newline included. */
export function checkpointLine(key: Buffer, cp: Checkpoint): string {
  return `${canonicalJson({ ...fields(cp), sig: signCheckpoint(key, cp) })}\n`;
}

export interface CheckpointFile {
  exists: boolean;
  /** The checkpoints whose signature holds, in file order, up to the first bad line. */
  checkpoints: Checkpoint[];
  /** What is wrong with the file, if anything: a line that does not parse or verify, an order that goes back. */
  problem: string | null;
}

/** Constant-time comparison of two hex signatures. */
function sameSig(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export function parseLine(key: Buffer, line: string): Checkpoint | null {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (v === null || typeof v !== "object" || v.v !== VERSION) return null;
  const { seq, head, at, legacy_through: legacyThrough, sig } = v;
  if (!Number.isSafeInteger(seq) || (seq as number) < 0 || typeof head !== "string" || !HEX64.test(head)) return null;
  if (
    !Number.isSafeInteger(at) ||
    !Number.isSafeInteger(legacyThrough) ||
    (legacyThrough as number) < 0 ||
    typeof sig !== "string"
  )
    return null;
  const { pruned_through: prunedThrough, pruned_head: prunedHead } = v;
  const cp: Checkpoint = { seq: seq as number, head, at: at as number, legacyThrough: legacyThrough as number };
  if (prunedThrough !== undefined) {
    if (!Number.isSafeInteger(prunedThrough) || (prunedThrough as number) < 1 || (prunedThrough as number) >= cp.seq)
      return null;
    if (typeof prunedHead !== "string" || !HEX64.test(prunedHead)) return null;
    cp.prunedThrough = prunedThrough as number;
    cp.prunedHead = prunedHead;
  }
  return sameSig(signCheckpoint(key, cp), sig) ? cp : null;
}

/** Check lines in their order: the signed checkpoints up to the first bad line, and what is wrong. */
export function checkLines(key: Buffer, lines: readonly string[]): Omit<CheckpointFile, "exists"> {
  const checkpoints: Checkpoint[] = [];
  for (const [i, line] of lines.entries()) {
    const cp = parseLine(key, line);
    if (!cp)
      return {
        checkpoints,
        problem: `checkpoint line ${i + 1} was altered or not signed with this appliance's audit key`,
      };
    const before = checkpoints.at(-1);
    if (
      before &&
      (cp.seq < before.seq ||
        cp.legacyThrough !== before.legacyThrough ||
        (cp.prunedThrough ?? 0) < (before.prunedThrough ?? 0))
    ) {
      return {
        checkpoints,
        problem: `checkpoint line ${i + 1} goes back to entry ${cp.seq} after entry ${before.seq}`,
      };
    }
    checkpoints.push(cp);
  }
  return { checkpoints, problem: null };
}

/**
 * Read and check every line. A last line without its newline is a write cut short by a crash
 * (the entries it would cover are committed, so nothing is lost): it is ignored.
 */
export function readCheckpoints(path: string, key: Buffer): CheckpointFile {
  if (!existsSync(path)) return { exists: false, checkpoints: [], problem: null };
  const lines = readFileSync(path, "utf8").split("\n");
  lines.pop(); // "" after the last newline, or a torn last line
  return { exists: true, ...checkLines(key, lines) };
}

/**
 * Where the signed checkpoints are kept: a file in the data dir (one node), or a table of the
 * shared database (several nodes anchor and verify the same chain: src/store/postgres/audit.ts).
 */
export interface CheckpointLog {
  /** "the checkpoint file", "the checkpoint table": for sentences about it. */
  readonly label: string;
  /** The same, naming it: "the checkpoint file /var/lib/agentowl/audit/checkpoints.jsonl". */
  readonly where: string;
  read(): CheckpointFile;
  /** Durable when it returns; false when not written because a later checkpoint is there (another node's). */
  append(cp: Checkpoint): boolean;
  /** The same, off the event loop where it can be. */
  appendAsync(cp: Checkpoint): Promise<boolean>;
  /** Where the latest checkpoint says the log starts, when other processes may prune it; undefined: only this one does. */
  latestPruned?(): { seq: number; hash: string } | null;
  close(): void;
}

/** The checkpoints of one node: `<data dir>/audit/checkpoints.jsonl`. */
export class FileCheckpoints implements CheckpointLog {
  readonly label = "the checkpoint file";
  private readonly writer: CheckpointWriter;

  constructor(
    readonly path: string,
    private readonly key: Buffer,
  ) {
    this.writer = new CheckpointWriter(path, key);
  }

  get where(): string {
    return `${this.label} ${this.path}`;
  }

  read(): CheckpointFile {
    return readCheckpoints(this.path, this.key);
  }

  append(cp: Checkpoint): boolean {
    this.writer.append(cp);
    return true;
  }

  async appendAsync(cp: Checkpoint): Promise<boolean> {
    await this.writer.appendAsync(cp);
    return true;
  }

  close(): void {
    this.writer.close();
  }
}

/** The file the checkpoints are appended to, opened once; every append is fsynced. */
export class CheckpointWriter {
  private fd: number | null = null;

  constructor(
    readonly path: string,
    private readonly key: Buffer,
  ) {}

  append(cp: Checkpoint): void {
    const fd = this.open();
    writeSync(fd, checkpointLine(this.key, cp));
    fsyncSync(fd);
  }

  /** The same, with the write and the fsync on the thread pool: the event loop goes on serving. */
  async appendAsync(cp: Checkpoint): Promise<void> {
    const fd = this.open();
    const line = Buffer.from(checkpointLine(this.key, cp));
    await new Promise<void>((resolve, reject) =>
      write(fd, line, 0, line.length, null, (e) => (e ? reject(e) : resolve())),
    );
    await new Promise<void>((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));
  }

  private open(): number {
    if (this.fd === null) {
      const created = !existsSync(this.path);
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      if (!created) dropTornLine(this.path);
      this.fd = openSync(this.path, "a", 0o600);
      if (statSync(this.path).mode & 0o077) chmodSync(this.path, 0o600);
      if (created) fsyncDir(dirname(this.path));
    }
    return this.fd;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** A crash mid-append leaves a line without its newline: cut it, so the next line stands alone. */
function dropTornLine(path: string): void {
  const text = readFileSync(path);
  if (text.length === 0 || text[text.length - 1] === 0x0a) return;
  truncateSync(path, text.lastIndexOf(0x0a) + 1);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
