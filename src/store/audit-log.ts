import {
  type AuditEntry,
  type Broken,
  type ChainedEntry,
  type ChainKeys,
  canonicalJson,
  entryHash,
  entryMac,
  GENESIS,
  LinkCheck,
  verifyRun,
} from "./audit-chain.ts";
import { type Checkpoint, type CheckpointLog, FileCheckpoints } from "./audit-checkpoints.ts";
import type {
  AnchorOptions,
  AnchorState,
  AuditLog,
  AuditQuery,
  Committer,
  ExpectedHead,
  NewAuditEntry,
  Tx,
  VerifyReport,
} from "./contract.ts";
import { type Clock, systemClock } from "../core/clock.ts";

const VERIFY_BATCH = 5000;

/** An entry as the table holds it: its details as the canonical text that was hashed, and its links. */
export type RawRow = Omit<AuditEntry, "details"> & { details: string; prev_hash: string; hash: string };

/** `e` as the entry numbered `seq`, written at `at`: absent fields as null, no details as {}. */
export function auditEntry(seq: number, at: number, e: NewAuditEntry): AuditEntry {
  return {
    seq,
    at,
    actor: e.actor,
    tenant: e.tenant ?? null,
    action: e.action,
    target: e.target ?? null,
    decision: e.decision ?? null,
    details: e.details ?? {},
  };
}

export interface AuditHead {
  seq: number;
  hash: string;
}

/**
 * The audit log, whatever the driver: the chain, its anchoring checkpoints and its verification.
 * A driver supplies the rows (`headTx`, `insertTx`, `committedHead`, `hashAt`, `page`, `list`).
 * `appendTx` adds an entry inside the caller's unit of work: a state change and its entry commit
 * together, and a failed append rolls the change back. `append` commits an entry on its own,
 * before an external write (a delivery, a secret lease) happens.
 *
 * Once `anchor`ed (the appliance does it before its first write), entries are keyed with the
 * audit key and the head is checkpointed to a file outside the table, only ever after the
 * entries a checkpoint covers are committed. Without it (tests and tools that open the database
 * without the vault) entries carry the plain SHA-256 link and nothing is checkpointed.
 */
export abstract class ChainedAudit<T extends Tx> implements AuditLog {
  private anchorOpts: AnchorOptions | null = null;
  private keys: ChainKeys | null = null;
  private writer: CheckpointLog | null = null;
  private lastCheckpoint: Checkpoint | null = null;
  private legacyThrough = 0;
  /** Where the log starts after retention pruned its beginning (the latest checkpoint says). */
  private pruned: { seq: number; hash: string } | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly committed = () => this.maybeCheckpoint(false);

  constructor(
    protected readonly committer: Committer<T>,
    protected readonly clock: Clock = systemClock,
  ) {}

  /** The newest entry, read inside the unit: appends must be serialized, so the next one links to it. */
  protected abstract headTx(tx: T): AuditHead | null;
  protected abstract insertTx(tx: T, e: AuditEntry, details: string, prevHash: string, hash: string): void;
  /** The newest committed entry, outside any unit; undefined when it cannot be read now (a unit is open). */
  protected abstract committedHead(): AuditHead | null | undefined;
  protected abstract hashAt(seq: number): string | null;
  /** Up to `limit` entries after `afterSeq`, in seq order. */
  protected abstract page(afterSeq: number, limit: number): RawRow[];
  /**
   * Delete up to `limit` entries from the start of the log through `through`, in one unit of work
   * that also records how far deletes may go (the append-only trigger checks it); how many went.
   * A driver without it keeps every entry (`prune` does nothing).
   */
  protected deletePrefix?(through: number, limit: number): Promise<number>;
  abstract list(q: AuditQuery): Promise<ChainedEntry[]>;

  /** Where the checkpoints go: the file the appliance names; a shared database keeps them in a table. */
  protected checkpointLog(opts: AnchorOptions): CheckpointLog {
    return new FileCheckpoints(opts.file, opts.keys.checkpoint);
  }

  appendTx(tx: T, e: NewAuditEntry): ChainedEntry {
    const { entry, details } = this.link(this.headTx(tx), tx.now, e);
    this.insertTx(tx, entry, details, entry.prevHash, entry.hash);
    this.checkpointAfter(tx);
    return entry;
  }

  /** `e` as the entry after `prev`, written at `at`: its seq, its details' canonical text and its link. */
  protected link(prev: AuditHead | null, at: number, e: NewAuditEntry): { entry: ChainedEntry; details: string } {
    const entry = auditEntry((prev?.seq ?? 0) + 1, at, e);
    const prevHash = prev?.hash ?? GENESIS;
    // Details are stored in canonical form, so verify can tell any change of their bytes.
    const details = canonicalJson(entry.details);
    const hash = this.keys ? entryMac(this.keys.entry, prevHash, entry, details) : entryHash(prevHash, entry, details);
    const chained = entry as ChainedEntry;
    chained.prevHash = prevHash;
    chained.hash = hash;
    return { entry: chained, details };
  }

  /** Once `tx` committed, checkpoint the head if enough entries came (when anchored). */
  protected checkpointAfter(tx: T): void {
    if (this.writer) tx.afterCommit(this.committed);
  }

  append(e: NewAuditEntry): Promise<ChainedEntry> {
    return this.committer.run((tx) => this.appendTx(tx, e));
  }

  /**
   * Key the chain and anchor it to the checkpoint file, before the first append. The first time
   * (no checkpoint yet): an empty log gets a checkpoint at its start; a log written before the
   * chain was keyed (every link plain SHA-256 and intact) is anchored once where it stands, and
   * its entries stay plain; a log that holds keyed entries but no checkpoint lost its file, which
   * is said (here, and by every verify from now on), and checkpoints start again at its head.
   */
  anchor(opts: AnchorOptions): AnchorState {
    if (this.writer) throw new Error("the audit log is anchored already");
    this.anchorOpts = opts;
    this.keys = opts.keys;
    this.writer = this.checkpointLog(opts);
    const file = this.writer.read();
    let state: AnchorState;
    const latest = file.checkpoints.at(-1);
    if (latest) {
      this.legacyThrough = file.checkpoints[0]!.legacyThrough;
      this.lastCheckpoint = latest;
      this.pruned = prunedStart(latest);
      // A quick look at the anchor itself (verify walks the rest): is the checkpointed head still there?
      const at = latest.seq > 0 ? this.hashAt(latest.seq) : null;
      const head = this.committedHead();
      const gone =
        latest.seq > 0 && !at
          ? `the log holds ${head?.seq ?? 0} entries, the latest checkpoint covers ${latest.seq}`
          : at !== null && at !== latest.head
            ? `entry ${latest.seq} is not the one the latest checkpoint signed`
            : null;
      state = {
        kind: "continued",
        checkpoint: latest,
        problem: [file.problem, gone].filter(Boolean).join("; ") || null,
      };
    } else {
      const head = this.committedHead();
      if (!head) {
        this.write({ seq: 0, head: GENESIS, at: this.clock.now(), legacyThrough: 0 });
        state = { kind: "new" };
      } else {
        const links = new LinkCheck(opts.keys, null);
        const broken = this.walk(links, () => null).broken;
        this.legacyThrough = links.lastPlain;
        if (!broken && links.lastPlain === head.seq && !file.problem)
          state = { kind: "upgraded", legacyThrough: head.seq, head: head.hash };
        else {
          const why =
            file.problem ?? (file.exists ? `${this.writer.label} is empty` : `${this.writer.label} is missing`);
          state = {
            kind: "restarted",
            problem:
              `${why} while the log holds ${head.seq} entries${broken ? ` and breaks at entry ${broken.seq}` : ""}` +
              `: checkpoints start again at entry ${head.seq}`,
          };
        }
        this.write({ seq: head.seq, head: head.hash, at: this.clock.now(), legacyThrough: this.legacyThrough });
      }
    }
    if (opts.everyMs > 0) {
      this.timer = setInterval(() => this.maybeCheckpoint(true), opts.everyMs);
      this.timer.unref?.();
    }
    return state;
  }

  /** The anchoring checkpoints (and tests) are written at once, before the appliance serves. */
  private write(cp: Checkpoint): boolean {
    if (!this.writer!.append(cp)) return false;
    this.lastCheckpoint = cp;
    this.anchorOpts?.onCheckpoint?.(cp);
    return true;
  }

  /**
   * Checkpoint the committed head when enough entries (or, on the timer, any) came after the last
   * one. The head is read here, after its commit, so a checkpoint is never ahead of the table;
   * the line is written and fsynced off the event loop, one at a time, the newest waiting one
   * replacing any older one still waiting.
   */
  private maybeCheckpoint(anyNew: boolean): void {
    if (!this.writer || !this.anchorOpts) return;
    try {
      const head = this.committedHead();
      if (!head) return;
      const since = head.seq - (this.lastCheckpoint?.seq ?? 0);
      if (since <= 0 || (!anyNew && since < this.anchorOpts.everyEntries)) return;
      this.lastCheckpoint = this.checkpointOf(head);
      this.waiting = this.lastCheckpoint;
      this.flushing ??= this.flushCheckpoints();
    } catch (e) {
      this.anchorOpts.onError?.(e);
    }
  }

  /** A checkpoint of `head`, carrying where the log starts when its beginning was pruned. */
  private checkpointOf(head: { seq: number; hash: string }): Checkpoint {
    // Another node may have pruned the log since: its checkpoint says where the log starts now.
    const theirs = this.writer?.latestPruned?.();
    if (theirs && theirs.seq > (this.pruned?.seq ?? 0)) this.pruned = theirs;
    return {
      seq: head.seq,
      head: head.hash,
      at: this.clock.now(),
      legacyThrough: this.legacyThrough,
      ...(this.pruned ? { prunedThrough: this.pruned.seq, prunedHead: this.pruned.hash } : {}),
    };
  }

  /**
   * Retention: remove the longest run of entries from the start of the log that are all older
   * than their tenant's cutoff (`cutoffFor(tenant)`, a time in ms), never the newest entry. A
   * checkpoint that names the last pruned entry and its hash is signed and fsynced first, then
   * the rows go: verification starts from that link (docs/operations.md#retention). Only an
   * anchored log is pruned: without the audit key nothing could vouch for the pruned prefix.
   */
  async prune(cutoffFor: (tenant: string | null) => number): Promise<{ entries: number; through: number }> {
    const done = { entries: 0, through: this.pruned?.seq ?? 0 };
    if (!this.writer || !this.keys || !this.deletePrefix) return done;
    const head = this.committedHead();
    if (!head) return done;
    let last: { seq: number; hash: string } | null = null;
    scan: for (let from = done.through; ; ) {
      const rows = this.page(from, 5000);
      if (rows.length === 0) break;
      for (const r of rows) {
        if (r.seq >= head.seq || r.at >= cutoffFor(r.tenant)) break scan;
        last = { seq: r.seq, hash: r.hash };
      }
      from = rows.at(-1)!.seq;
    }
    if (!last) return done;
    await this.flushing;
    this.pruned = last;
    // Written before any row goes; refused only when another node checkpointed a later head meanwhile.
    for (let tries = 0; !this.write(this.checkpointOf(this.committedHead() ?? head)); tries++) {
      if (tries >= 10) throw new Error("the pruning checkpoint could not be written: others keep checkpointing ahead");
    }
    let entries = 0;
    for (;;) {
      const n = await this.deletePrefix(last.seq, 5000);
      entries += n;
      if (n < 5000) break;
    }
    return { entries, through: last.seq };
  }

  private waiting: Checkpoint | null = null;
  private flushing: Promise<void> | null = null;

  private async flushCheckpoints(): Promise<void> {
    while (this.waiting) {
      const cp = this.waiting;
      this.waiting = null;
      try {
        // Not written: another node's checkpoint covers a later head already.
        if (await this.writer!.appendAsync(cp)) this.anchorOpts?.onCheckpoint?.(cp);
      } catch (e) {
        // The disk is full or read-only: the next checkpoint covers these entries too.
        this.anchorOpts?.onError?.(e);
      }
    }
    this.flushing = null;
  }

  /** Write a checkpoint of the committed head now, if the log grew since the last one. */
  async checkpoint(): Promise<Checkpoint | null> {
    this.maybeCheckpoint(true);
    await this.flushing;
    return this.lastCheckpoint;
  }

  /** At shutdown, after the last commit: a final checkpoint, and the file closed. */
  async closeAnchor(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (!this.writer) return;
    await this.checkpoint();
    this.writer.close();
  }

  /**
   * Walk the whole chain in seq order, checking every link (`links`) and, through `also`, any
   * other expectation about an entry. Stops at the first broken link.
   */
  private walk(
    links: LinkCheck,
    also: (e: ChainedEntry) => string | null,
    start: { seq: number; hash: string } | null = null,
  ): { entries: number; last: { seq: number; hash: string } | null; broken: Broken | null } {
    // After pruning, the first kept entry must link to the pruned prefix's signed last hash.
    let prev: { seq: number; hash: string } | null = start;
    let entries = 0;
    for (;;) {
      const rows = this.page(prev?.seq ?? 0, VERIFY_BATCH);
      if (rows.length === 0) break;
      if (prev === null && rows[0]!.seq !== 1)
        return { entries, last: prev, broken: { seq: rows[0]!.seq, reason: "the log does not start at entry 1" } };
      for (const r of rows) {
        const details = parseCanonical(r.details);
        const e: ChainedEntry = {
          seq: r.seq,
          at: r.at,
          actor: r.actor,
          tenant: r.tenant,
          action: r.action,
          target: r.target,
          decision: r.decision,
          details: details ?? {},
          prevHash: r.prev_hash,
          hash: r.hash,
        };
        const broken =
          verifyRun([e], prev, links) ?? (details === null ? { seq: r.seq, reason: "its details were altered" } : null);
        const other = broken ? null : also(e);
        if (broken || other) return { entries, last: prev, broken: broken ?? { seq: e.seq, reason: other! } };
        entries++;
        prev = { seq: e.seq, hash: e.hash };
      }
    }
    return { entries, last: prev, broken: null };
  }

  /**
   * Verify the log: every link (keyed after the legacy entries), every checkpoint's head at its
   * position, the latest checkpoint's count (so a log cut short is caught), and, when given, a
   * head the operator kept elsewhere. The report names the first bad entry and the last good one.
   */
  async verify(opts: { expectHead?: ExpectedHead } = {}): Promise<VerifyReport> {
    const anchored = this.anchorOpts !== null && this.keys !== null;
    const file = anchored ? this.writer!.read() : null;
    const cps = file?.checkpoints ?? [];
    const latest = cps.at(-1) ?? null;
    const signedHeads = new Map(cps.map((c) => [c.seq, c]));
    const links = new LinkCheck(this.keys, cps.length ? cps[0]!.legacyThrough : null);
    const expect = opts.expectHead ? { ...opts.expectHead, found: false } : null;
    let legacyRewritten = false;
    const pruned = latest ? prunedStart(latest) : null;
    const walked = this.walk(
      links,
      (e) => {
        const cp = signedHeads.get(e.seq);
        if (cp && cp.head !== e.hash) {
          // Plain links can be recomputed by anyone: a change anywhere in the legacy entries shows
          // only here, at the checkpoint that anchored them, and none of them can be vouched for.
          if (e.seq <= cp.legacyThrough) legacyRewritten = true;
          if (legacyRewritten)
            return (
              `entries 1 to ${cp.legacyThrough} (plain SHA-256, written before the chain was keyed) no longer end ` +
              `in the head the upgrade checkpoint of ${iso(cp.at)} signed (${cp.head}): ` +
              "one of them was changed and the links after it recomputed"
            );
          return `its hash is not the one the checkpoint of ${iso(cp.at)} signed for it (${cp.head})`;
        }
        if (expect && e.hash === expect.hash) {
          if (expect.seq !== null && expect.seq !== e.seq)
            return `it carries the expected head, which was entry ${expect.seq}`;
          expect.found = true;
        }
        if (expect && expect.seq === e.seq && e.hash !== expect.hash)
          return `its hash is not the expected head ${expect.hash}`;
        return null;
      },
      pruned,
    );
    const report: VerifyReport = {
      ok: true,
      entries: walked.entries,
      head: walked.last?.hash ?? GENESIS,
      firstBroken: walked.broken,
      lastGood: walked.last,
      keyed: this.keys !== null,
      checkpoint: latest && { seq: latest.seq, head: latest.head, at: latest.at },
      missing: 0,
      expectHead: expect,
      problem: null,
    };
    const fail = (problem: string, broken: Broken | null = report.firstBroken): VerifyReport => ({
      ...report,
      ok: false,
      problem,
      firstBroken: broken,
    });
    if (walked.broken && legacyRewritten)
      return { ...fail(walked.broken.reason), entries: 0, head: GENESIS, lastGood: null };
    if (walked.broken) return fail(`entry ${walked.broken.seq} is broken: ${walked.broken.reason}`);
    const end = walked.last?.seq ?? pruned?.seq ?? 0;
    if (latest && end < latest.seq) {
      report.missing = latest.seq - end;
      return fail(
        `${count(report.missing)} missing at the end of the log: the checkpoint of ${iso(latest.at)} ` +
          `covers ${latest.seq} entries (head ${latest.head}), the log ends at entry ${end}`,
        { seq: end + 1, reason: `entries ${end + 1} to ${latest.seq} are missing (truncated)` },
      );
    }
    if (expect && !expect.found) {
      if (expect.seq !== null && end < expect.seq) report.missing = expect.seq - end;
      return fail(
        expect.seq !== null && end < expect.seq
          ? `${count(report.missing)} missing at the end of the log: the expected head is entry ${expect.seq}, the log ends at entry ${end}`
          : `the expected head ${expect.hash} is not in the log: it was cut short or rewritten`,
        expect.seq !== null && end < expect.seq
          ? { seq: end + 1, reason: `entries ${end + 1} to ${expect.seq} are missing (truncated)` }
          : null,
      );
    }
    const where = this.writer?.where ?? "";
    if (file?.problem) return fail(`${file.problem} (${where.replace(/^the checkpoint (file|table) /, "")})`);
    if (anchored && end > 0 && !latest) {
      return fail(
        file!.exists
          ? `${where} holds no checkpoint: the log's head is not anchored`
          : `${where} is missing: the log's head is not anchored`,
      );
    }
    if (cps.length && cps[0]!.seq !== cps[0]!.legacyThrough) {
      return fail(
        `the checkpoint file was started again at entry ${cps[0]!.seq} (it was lost or replaced): no checkpoint vouches for the log before it`,
      );
    }
    return report;
  }
}

/** Where a checkpoint says the log starts: after the pruned prefix, linked to its last hash. */
const prunedStart = (cp: Checkpoint): { seq: number; hash: string } | null =>
  cp.prunedThrough && cp.prunedHead ? { seq: cp.prunedThrough, hash: cp.prunedHead } : null;

const iso = (ms: number) => new Date(ms).toISOString();
const count = (n: number) => (n === 1 ? "1 entry is" : `${n} entries are`);

/** The details object, only if the stored text is exactly its canonical JSON. */
function parseCanonical(text: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(text) as unknown;
    if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
    return canonicalJson(value) === text ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
