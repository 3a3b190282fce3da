import { and, desc, eq, inArray, lt, lte } from "drizzle-orm";
import { type ApprovalRow, type ApprovalState, type ApprovalStore } from "../contract.ts";
import { ApprovalFlow } from "../approval-flow.ts";
import { approvals } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteAudit } from "./audit.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

same<Same<ApprovalRow, typeof approvals.$inferSelect>>(true);

/** The approvals store on SQLite (the transitions: ../approval-flow.ts). */
export class SqliteApprovals extends ApprovalFlow<SqliteTx> implements ApprovalStore {
  constructor(
    private readonly db: Db,
    committer: SqliteCommitter,
    audit: SqliteAudit,
  ) {
    super(committer, audit);
  }

  protected insertTx(tx: SqliteTx, row: ApprovalRow): void {
    tx.db.insert(approvals).values(row).run();
  }

  protected settleRowTx(tx: SqliteTx, d: ApprovalRow): void {
    tx.db
      .update(approvals)
      .set({ state: d.state, decidedBy: d.decidedBy, decidedAt: d.decidedAt, reason: d.reason })
      .where(eq(approvals.id, d.id))
      .run();
  }

  protected findForDecisionTx(tx: SqliteTx, id: string): ApprovalRow | null {
    return tx.db.select().from(approvals).where(eq(approvals.id, id)).get() ?? null;
  }

  protected dueTx(tx: SqliteTx): ApprovalRow[] {
    return tx.db
      .select()
      .from(approvals)
      .where(and(eq(approvals.state, "pending"), lte(approvals.expiresAt, tx.now)))
      .all();
  }

  async get(id: string): Promise<ApprovalRow | null> {
    return this.db.select().from(approvals).where(eq(approvals.id, id)).get() ?? null;
  }

  async list(q: Parameters<ApprovalStore["list"]>[0]): Promise<ApprovalRow[]> {
    return this.db
      .select()
      .from(approvals)
      .where(
        and(
          q.tenants ? inArray(approvals.tenant, [...q.tenants]) : undefined,
          q.state ? eq(approvals.state, q.state as ApprovalState) : undefined,
          q.before ? lt(approvals.id, q.before) : undefined,
        ),
      )
      .orderBy(desc(approvals.id))
      .limit(q.limit)
      .all();
  }
}
