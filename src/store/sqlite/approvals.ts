import { and, desc, eq, inArray, lt, lte } from "drizzle-orm";
import { newId } from "../../core/ids.ts";
import { AppError } from "../../errors/index.ts";
import {
  APPROVAL_DECIDED,
  type ApprovalRow,
  type ApprovalState,
  type ApprovalStore,
  type ParkRequest,
} from "../contract.ts";
import { approvals } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteAudit } from "./audit.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

same<Same<ApprovalRow, typeof approvals.$inferSelect>>(true);

/**
 * The approvals store (docs/desired-state.md#policies). Every transition is one unit of work with its audit entry and
 * its outbox event, so a decision is recorded, announced and applied together or not at all.
 */
export class SqliteApprovals implements ApprovalStore {
  constructor(
    private readonly db: Db,
    private readonly committer: SqliteCommitter,
    private readonly audit: SqliteAudit,
  ) {}

  /** Park an action (the dispatcher calls this inside the unit that moves its task to awaiting_approval). */
  parkTx(tx: SqliteTx, r: ParkRequest): ApprovalRow {
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
    tx.db.insert(approvals).values(row).run();
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
    tx: SqliteTx,
    row: ApprovalRow,
    state: Exclude<ApprovalState, "pending">,
    by: string,
    reason: string | null,
  ): ApprovalRow {
    const decided = { ...row, state, decidedBy: by, decidedAt: tx.now, reason };
    tx.db
      .update(approvals)
      .set({ state, decidedBy: by, decidedAt: tx.now, reason })
      .where(eq(approvals.id, row.id))
      .run();
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

  /**
   * A person's decision. Only a pending approval can be decided; one whose time ran out is
   * expired first (with its declared outcome) and the late decision is refused.
   */
  decide(id: string, d: { approve: boolean; reason: string | null; actor: string }): Promise<ApprovalRow> {
    return this.committer
      .run((tx) => {
        const row = tx.db.select().from(approvals).where(eq(approvals.id, id)).get();
        if (!row) throw new AppError("not_found", "not found");
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

  /** Expire every pending approval whose time ran out; returns how many. */
  expireDue(): Promise<number> {
    return this.committer.run((tx) => {
      const due = tx.db
        .select()
        .from(approvals)
        .where(and(eq(approvals.state, "pending"), lte(approvals.expiresAt, tx.now)))
        .all();
      for (const row of due) this.settleTx(tx, row, "expired", "system", "no decision in time");
      return due.length;
    });
  }

  async get(id: string): Promise<ApprovalRow | null> {
    return this.db.select().from(approvals).where(eq(approvals.id, id)).get() ?? null;
  }

  /** Newest first. */
  async list(q: {
    tenants?: readonly string[];
    state?: string;
    before?: string;
    limit: number;
  }): Promise<ApprovalRow[]> {
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
