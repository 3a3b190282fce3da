import type { AuditEntry, ChainedEntry } from "../audit-chain.ts";
import {
  type Checkpoint,
  type CheckpointFile,
  type CheckpointLog,
  checkLines,
  checkpointLine,
  parseLine,
} from "../audit-checkpoints.ts";
import { type AuditHead, auditEntry, ChainedAudit, type RawRow } from "../audit-log.ts";
import type { AnchorOptions, AuditQuery, NewAuditEntry } from "../contract.ts";
import type { Clock } from "../../core/clock.ts";
import type { SyncConnection } from "./bridge.ts";
import type { PgCommitter, PgTx, Tail } from "./committer.ts";
import { num, type PgDb } from "./db.ts";
import { OUTBOX_LOCK } from "./outbox.ts";

const COLUMNS = "seq, at, actor, tenant, action, target, decision, details, prev_hash, hash";

const toRaw = (r: Record<string, unknown>): RawRow => ({
  seq: num(r.seq),
  at: num(r.at),
  actor: r.actor as string,
  tenant: (r.tenant as string | null) ?? null,
  action: r.action as string,
  target: (r.target as string | null) ?? null,
  decision: (r.decision as string | null) ?? null,
  details: r.details as string,
  prev_hash: r.prev_hash as string,
  hash: r.hash as string,
});

const toEntry = (r: Record<string, unknown>): ChainedEntry => {
  const { details, prev_hash: prevHash, ...rest } = toRaw(r);
  return { ...rest, details: JSON.parse(details) as Record<string, unknown>, prevHash };
};

function readHead(conn: SyncConnection): AuditHead | null {
  const [r] = conn.query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
  return r ? { seq: num(r.seq), hash: r.hash as string } : null;
}

/** Entries in one statement (deferred: it travels with the COMMIT), in seq order. */
function insertRows(conn: SyncConnection, rows: (Omit<ChainedEntry, "details"> & { details: string })[]): void {
  conn.defer(
    `INSERT INTO audit_log (${COLUMNS}) SELECT ${COLUMNS} FROM jsonb_to_recordset($1::text::jsonb) AS r(seq bigint, ` +
      "at bigint, actor text, tenant text, action text, target text, decision text, details text, prev_hash text, hash text)",
    [
      JSON.stringify(
        rows.map((r) => ({
          seq: r.seq,
          at: r.at,
          actor: r.actor,
          tenant: r.tenant,
          action: r.action,
          target: r.target,
          decision: r.decision,
          details: r.details,
          prev_hash: r.prevHash,
          hash: r.hash,
        })),
      ),
    ],
  );
}

/** Any number, the same on every node: checkpoint inserts take turns on it. */
const CHECKPOINT_LOCK = 0x6163_6b70;

/**
 * The chain's signed checkpoints in `audit_checkpoints`, so that every node anchors to and
 * verifies the same ones (a file per node would leave each node's file covering only its own
 * stretch of the shared chain). An insert takes an advisory lock and is refused when it would
 * put the table's order back (a node whose head was read before another's later checkpoint, or
 * before another node pruned): the table reads as one file that only grows forward.
 */
export class PgCheckpoints implements CheckpointLog {
  readonly label = "the checkpoint table";
  readonly where = "the checkpoint table audit_checkpoints";

  constructor(
    private readonly db: PgDb,
    private readonly key: Buffer,
  ) {}

  read(): CheckpointFile {
    const rows = this.db.sync.query<{ line: string }>("SELECT line FROM audit_checkpoints ORDER BY id");
    return {
      exists: true,
      ...checkLines(
        this.key,
        rows.map((r) => r.line),
      ),
    };
  }

  append(cp: Checkpoint): boolean {
    const conn = this.db.sync;
    conn.defer("BEGIN");
    conn.defer("SELECT pg_advisory_xact_lock($1)", [CHECKPOINT_LOCK]);
    try {
      const written = conn.query(
        "INSERT INTO audit_checkpoints (seq, pruned_through, line) SELECT $1, $2, $3 " +
          "WHERE NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE seq > $1 OR pruned_through > $2) RETURNING id",
        [cp.seq, cp.prunedThrough ?? 0, checkpointLine(this.key, cp).trimEnd()],
      );
      conn.query("COMMIT");
      return written.length === 1;
    } catch (e) {
      conn.discard();
      try {
        conn.query("ROLLBACK");
      } catch {
        // the connection failed: nothing was written
      }
      throw e;
    }
  }

  /** Three short statements between the committer's transactions: not worth a trip through the pool. */
  async appendAsync(cp: Checkpoint): Promise<boolean> {
    return this.append(cp);
  }

  latestPruned(): { seq: number; hash: string } | null {
    const [r] = this.db.sync.query<{ line: string }>(
      "SELECT line FROM audit_checkpoints WHERE pruned_through > 0 ORDER BY id DESC LIMIT 1",
    );
    const cp = r ? parseLine(this.key, r.line) : null;
    return cp?.prunedThrough && cp.prunedHead ? { seq: cp.prunedThrough, hash: cp.prunedHead } : null;
  }

  close(): void {}
}

/**
 * The audit log on PostgreSQL (the chain, checkpoints and verification: ../audit-log.ts). It stays
 * one chain across nodes: a batch's entries are chained at the end of its transaction under the
 * transaction-level advisory lock the outbox takes (one lock for both, so two transactions can
 * never take them in opposite orders), which reads the head inside the transaction, so the next
 * node's append waits for this commit and links to it. Details are stored as text: the canonical
 * bytes that were hashed. Its checkpoints are in the database too (PgCheckpoints), not in each
 * node's data dir.
 */
export class PgAudit extends ChainedAudit<PgTx> {
  constructor(
    private readonly db: PgDb,
    committer: PgCommitter,
    clock?: Clock,
  ) {
    super(committer, clock);
  }

  protected override checkpointLog(opts: AnchorOptions): CheckpointLog {
    return new PgCheckpoints(this.db, opts.keys.checkpoint);
  }

  /**
   * The batch's entries, chained at the end of its transaction under the append lock: the head is
   * read there, so the next node's appends wait only for this batch's last statements and COMMIT.
   */
  private readonly tail: Tail<{ at: number; e: NewAuditEntry; out: ChainedEntry }> = {
    lock: OUTBOX_LOCK,
    order: 0,
    write: (conn, rows) => {
      let prev = readHead(conn);
      const linked = rows.map((r) => {
        const { entry, details } = this.link(prev, r.at, r.e);
        Object.assign(r.out, entry);
        prev = entry;
        return { ...entry, details };
      });
      insertRows(conn, linked);
    },
  };

  /**
   * The entry is chained when the unit's transaction commits: what it returns holds its seq and
   * links by the time the unit's caller is answered, not inside the unit.
   */
  override appendTx(tx: PgTx, e: NewAuditEntry): ChainedEntry {
    const out: ChainedEntry = { ...auditEntry(0, tx.now, e), prevHash: "", hash: "" };
    tx.atEnd(this.tail, { at: tx.now, e, out });
    this.checkpointAfter(tx);
    return out;
  }

  // The one-entry path ChainedAudit asks for; appendTx above chains a batch's entries at its end instead.
  protected headTx(tx: PgTx): AuditHead | null {
    tx.lock(OUTBOX_LOCK);
    return readHead(tx.conn);
  }

  protected insertTx(tx: PgTx, e: AuditEntry, details: string, prevHash: string, hash: string): void {
    insertRows(tx.conn, [{ ...e, details, prevHash, hash }]);
  }

  /** Read on the committer's connection between its transactions (the event loop is not inside one). */
  protected committedHead(): AuditHead | null | undefined {
    return readHead(this.db.sync);
  }

  protected hashAt(seq: number): string | null {
    const [r] = this.db.sync.query("SELECT hash FROM audit_log WHERE seq = $1", [seq]);
    return r ? (r.hash as string) : null;
  }

  protected page(afterSeq: number, limit: number): RawRow[] {
    return this.db.sync
      .query(`SELECT ${COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, [afterSeq, limit])
      .map(toRaw);
  }

  async list(q: AuditQuery): Promise<ChainedEntry[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.tenants) where.push(`tenant = ANY(${p([...q.tenants])}::text[])`);
    if (q.action) where.push(`action = ${p(q.action)}`);
    if (q.actor) where.push(`actor = ${p(q.actor)}`);
    if (q.event) {
      const e = p(q.event);
      where.push(`(target = ${e} OR details::jsonb ->> 'event' = ${e})`);
    }
    if (q.since !== undefined) where.push(`at >= ${p(q.since)}`);
    if (q.until !== undefined) where.push(`at <= ${p(q.until)}`);
    if (q.before !== undefined) where.push(`seq < ${p(q.before)}`);
    const rows = await this.db.read(
      `SELECT ${COLUMNS} FROM audit_log${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY seq DESC LIMIT ${p(q.limit)}`,
      params,
    );
    return rows.map(toEntry);
  }
}
