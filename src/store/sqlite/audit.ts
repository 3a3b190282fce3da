import { and, desc, eq, gte, inArray, lt, lte, or, type SQL, sql } from "drizzle-orm";
import type { AuditEntry, ChainedEntry } from "../audit-chain.ts";
import { type AuditHead, ChainedAudit, type RawRow } from "../audit-log.ts";
import type { AuditQuery } from "../contract.ts";
import type { Clock } from "../../core/clock.ts";
import { auditLog } from "../schema/index.ts";
import type { SqliteHandle } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";

export { parseExpectedHead } from "../audit-chain.ts";
/** An audit_log row as SQLite holds it (the tamper tests write these directly). */
export type { RawRow } from "../audit-log.ts";

/**
 * The audit log on SQLite (the chain, checkpoints and verification: ../audit-log.ts). Appends are
 * serialized by the committer: one connection, one transaction at a time. So the chain's head is
 * kept in memory after the first read: every append links to the entry the last one wrote,
 * without a query. A rollback (of a batch, or of one unit's savepoint) drops it, and the next
 * append reads the table again; should anything else have appended meanwhile, the insert's seq
 * collides with the primary key, the unit fails, and its retry reads the table too.
 */
export class SqliteAudit extends ChainedAudit<SqliteTx> {
  /** The newest entry as this connection last wrote or read it; undefined: read the table. */
  private head: AuditHead | null | undefined = undefined;
  private readonly last;
  private readonly insert;
  private readonly byPage;

  constructor(
    private readonly handle: SqliteHandle,
    committer: SqliteCommitter,
    clock?: Clock,
  ) {
    super(committer, clock);
    committer.onRollback(() => {
      this.head = undefined;
    });
    this.last = handle.sqlite.prepare<AuditHead, []>("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
    this.insert = handle.sqlite.prepare<
      never,
      [number, number, string, string | null, string, string | null, string | null, string, string, string]
    >(
      "INSERT INTO audit_log (seq, at, actor, tenant, action, target, decision, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.byPage = handle.sqlite.prepare<RawRow, [number, number]>(
      "SELECT seq, at, actor, tenant, action, target, decision, details, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    );
  }

  protected headTx(_tx: SqliteTx): AuditHead | null {
    if (this.head === undefined) this.head = this.last.get();
    return this.head;
  }

  protected insertTx(_tx: SqliteTx, e: AuditEntry, details: string, prevHash: string, hash: string): void {
    try {
      this.insert.run(e.seq, e.at, e.actor, e.tenant, e.action, e.target, e.decision, details, prevHash, hash);
    } catch (err) {
      this.head = undefined;
      throw err;
    }
    this.head = { seq: e.seq, hash };
  }

  protected committedHead(): AuditHead | null | undefined {
    // Inside a transaction the head may not be committed yet. Outside one, the kept head is the
    // committed one (a rollback drops it): the checkpoint after each commit reads no row.
    if (this.handle.sqlite.inTransaction) return undefined;
    if (this.head === undefined) this.head = this.last.get();
    return this.head;
  }

  protected hashAt(seq: number): string | null {
    return (
      this.handle.sqlite.query<{ hash: string }, [number]>("SELECT hash FROM audit_log WHERE seq = ?").get(seq)?.hash ??
      null
    );
  }

  protected page(afterSeq: number, limit: number): RawRow[] {
    return this.byPage.all(afterSeq, limit);
  }

  protected override deletePrefix(through: number, limit: number): Promise<number> {
    return this.committer.run(() => {
      // Never the newest entry; still, the head is read again after a delete.
      this.head = undefined;
      // The append-only trigger lets deletes through up to this entry only (migrations/0014_audit_prune.sql).
      this.handle.sqlite
        .query<never, [string, number]>(
          "INSERT INTO kv (key, value, updated_at) VALUES ('audit.pruned_through', ?, ?) " +
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .run(String(through), this.clock.now());
      return this.handle.sqlite
        .query<never, [number, number]>(
          "DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE seq <= ? ORDER BY seq LIMIT ?)",
        )
        .run(through, limit).changes;
    });
  }

  async list(q: AuditQuery): Promise<ChainedEntry[]> {
    const where: (SQL | undefined)[] = [
      q.tenants ? inArray(auditLog.tenant, [...q.tenants]) : undefined,
      q.action ? eq(auditLog.action, q.action) : undefined,
      q.actor ? eq(auditLog.actor, q.actor) : undefined,
      q.event
        ? or(eq(auditLog.target, q.event), sql`json_extract(${auditLog.details}, '$.event') = ${q.event}`)
        : undefined,
      q.since !== undefined ? gte(auditLog.at, q.since) : undefined,
      q.until !== undefined ? lte(auditLog.at, q.until) : undefined,
      q.before !== undefined ? lt(auditLog.seq, q.before) : undefined,
    ];
    return this.handle.db
      .select()
      .from(auditLog)
      .where(and(...where))
      .orderBy(desc(auditLog.seq))
      .limit(q.limit)
      .all();
  }
}
