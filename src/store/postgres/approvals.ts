import { newId } from "../../core/ids.ts";
import { AppError } from "../../errors/index.ts";
import {
  APPROVAL_DECIDED,
  type ApprovalRow,
  type ApprovalState,
  type ApprovalStore,
  type ParkRequest,
} from "../contract.ts";
import type { PgAudit } from "./audit.ts";
import type { PgCommitter, PgTx } from "./committer.ts";
import type { PgDb } from "./db.ts";
import { Rows } from "./rows.ts";
import { approvals } from "./schema/index.ts";

const rows = new Rows<ApprovalRow>(approvals);

/**
 * Approvals on PostgreSQL (src/store/sqlite/approvals.ts is the model): every transition is one
 * unit of work with its audit entry and its outbox event. A decision reads its row FOR UPDATE, so
 * two nodes deciding (or expiring) the same approval take turns and the second sees the first's.
 */
export class PgApprovals implements ApprovalStore {
  constructor(
    private readonly db: PgDb,
    private readonly committer: PgCommitter,
    private readonly audit: PgAudit,
  ) {}

  parkTx(tx: PgTx, r: ParkRequest): ApprovalRow {
    const row: ApprovalRow = {
      id: newId("apr", tx.now),
      tenant: r.tenant,
      eventId: r.eventId ?? null,
      action: r.action,
      policy: r.policy,
      state: "pending",
      createdAt: tx.now,
      expiresAt: tx.now + r.expiresInMs,
      onExpiry: r.onExpiry,
      decidedBy: null,
      decidedAt: null,
      reason: null,
    };
    const insert = rows.insert(row);
    tx.conn.defer(insert.text, insert.params);
    this.audit.appendTx(tx, {
      actor: "system",
      tenant: r.tenant,
      action: "approval.request",
      target: row.id,
      details: {
        event: row.eventId,
        action: r.action,
        policy: r.policy,
        expires_at: row.expiresAt,
        on_expiry: r.onExpiry,
      },
    });
    return row;
  }

  park(r: ParkRequest): Promise<ApprovalRow> {
    return this.committer.run((tx) => this.parkTx(tx, r));
  }

  private settleTx(
    tx: PgTx,
    row: ApprovalRow,
    state: Exclude<ApprovalState, "pending">,
    by: string,
    reason: string | null,
  ): ApprovalRow {
    const decided = { ...row, state, decidedBy: by, decidedAt: tx.now, reason };
    tx.conn.defer("UPDATE approvals SET state = $2, decided_by = $3, decided_at = $4, reason = $5 WHERE id = $1", [
      row.id,
      state,
      by,
      tx.now,
      reason,
    ]);
    const outcome = state === "expired" ? row.onExpiry : state === "approved" ? "approve" : "deny";
    this.audit.appendTx(tx, {
      actor: by,
      tenant: row.tenant,
      action: `approval.${state === "expired" ? "expire" : outcome}`,
      target: row.id,
      decision: outcome,
      details: { reason, event: row.eventId },
    });
    tx.emit({
      topic: APPROVAL_DECIDED,
      tenant: row.tenant,
      payload: { id: row.id, state, outcome, event: row.eventId, action: row.action },
    });
    return decided;
  }

  decide(id: string, d: { approve: boolean; reason: string | null; actor: string }): Promise<ApprovalRow> {
    return this.committer
      .run((tx) => {
        const [found] = tx.conn.query("SELECT * FROM approvals WHERE id = $1 FOR UPDATE", [id]);
        if (!found) throw new AppError("not_found", "not found");
        const row = rows.from(found);
        if (row.state !== "pending") throw new AppError("conflict", `approval ${id} was already ${row.state}`);
        if (row.expiresAt <= tx.now) {
          this.settleTx(tx, row, "expired", "system", "no decision in time");
          // The expiry must stand even though this decision is refused: commit it, then refuse.
          return { late: true as const, row };
        }
        return this.settleTx(tx, row, d.approve ? "approved" : "denied", d.actor, d.reason);
      })
      .then((r) => {
        if ("late" in r)
          throw new AppError("conflict", `approval ${id} expired before it was decided (outcome: ${r.row.onExpiry})`);
        return r;
      });
  }

  expireDue(): Promise<number> {
    return this.committer.run((tx) => {
      // SKIP LOCKED: an approval another node is deciding or expiring right now is that node's.
      const due = tx.conn
        .query(
          "SELECT * FROM approvals WHERE state = 'pending' AND expires_at <= $1 ORDER BY id FOR UPDATE SKIP LOCKED",
          [tx.now],
        )
        .map(rows.from);
      for (const row of due) this.settleTx(tx, row, "expired", "system", "no decision in time");
      return due.length;
    });
  }

  async get(id: string): Promise<ApprovalRow | null> {
    const [r] = await this.db.read("SELECT * FROM approvals WHERE id = $1", [id]);
    return r ? rows.from(r) : null;
  }

  async list(q: {
    tenants?: readonly string[];
    state?: string;
    before?: string;
    limit: number;
  }): Promise<ApprovalRow[]> {
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
