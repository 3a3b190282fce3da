import { ApprovalFlow } from "../approval-flow.ts";
import type { ApprovalRow, ApprovalStore } from "../contract.ts";
import type { PgAudit } from "./audit.ts";
import type { PgCommitter, PgTx } from "./committer.ts";
import type { PgDb } from "./db.ts";
import { Rows } from "./rows.ts";
import { approvals } from "./schema/index.ts";

const rows = new Rows<ApprovalRow>(approvals);

/**
 * Approvals on PostgreSQL (the transitions: ../approval-flow.ts). A decision reads its row FOR
 * UPDATE, so two nodes deciding (or expiring) the same approval take turns and the second sees the first's.
 */
export class PgApprovals extends ApprovalFlow<PgTx> implements ApprovalStore {
  constructor(
    private readonly db: PgDb,
    committer: PgCommitter,
    audit: PgAudit,
  ) {
    super(committer, audit);
  }

  protected insertTx(tx: PgTx, row: ApprovalRow): void {
    const insert = rows.insert(row);
    tx.conn.defer(insert.text, insert.params);
  }

  protected settleRowTx(tx: PgTx, d: ApprovalRow): void {
    tx.conn.defer("UPDATE approvals SET state = $2, decided_by = $3, decided_at = $4, reason = $5 WHERE id = $1", [
      d.id,
      d.state,
      d.decidedBy,
      d.decidedAt,
      d.reason,
    ]);
  }

  protected findForDecisionTx(tx: PgTx, id: string): ApprovalRow | null {
    const [found] = tx.conn.query("SELECT * FROM approvals WHERE id = $1 FOR UPDATE", [id]);
    return found ? rows.from(found) : null;
  }

  protected dueTx(tx: PgTx): ApprovalRow[] {
    // SKIP LOCKED: an approval another node is deciding or expiring right now is that node's.
    return tx.conn
      .query(
        "SELECT * FROM approvals WHERE state = 'pending' AND expires_at <= $1 ORDER BY id FOR UPDATE SKIP LOCKED",
        [tx.now],
      )
      .map(rows.from);
  }

  async get(id: string): Promise<ApprovalRow | null> {
    const [r] = await this.db.read("SELECT * FROM approvals WHERE id = $1", [id]);
    return r ? rows.from(r) : null;
  }

  async list(q: Parameters<ApprovalStore["list"]>[0]): Promise<ApprovalRow[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    if (q.tenants) where.push(`tenant = ANY($${params.push([...q.tenants])}::text[])`);
    if (q.state) where.push(`state = $${params.push(q.state)}`);
    if (q.before) where.push(`id < $${params.push(q.before)}`);
    const found = await this.db.read(
      `SELECT * FROM approvals${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT $${params.push(q.limit)}`,
      params,
    );
    return found.map(rows.from);
  }
}
