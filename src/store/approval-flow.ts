import { newId } from "../core/ids.ts";
import { AppError } from "../errors/index.ts";
import {
  APPROVAL_DECIDED,
  type ApprovalRow,
  type ApprovalState,
  type Committer,
  type NewAuditEntry,
  type ParkRequest,
  type Tx,
} from "./contract.ts";

/** The audit a driver's approvals write their entries to (its ChainedAudit). */
export interface TxAudit<T extends Tx> {
  appendTx(tx: T, e: NewAuditEntry): unknown;
}

/**
 * The approvals store (docs/desired-state.md#policies), the same on every driver: every transition
 * is one unit of work with its audit entry and its outbox event, so a decision is recorded,
 * announced and applied together or not at all. A driver supplies its statements and the reads
 * of ApprovalStore.
 */
export abstract class ApprovalFlow<T extends Tx> {
  constructor(
    protected readonly committer: Committer<T>,
    private readonly audit: TxAudit<T>,
  ) {}

  protected abstract insertTx(tx: T, row: ApprovalRow): void;
  protected abstract settleRowTx(tx: T, decided: ApprovalRow): void;
  /** The approval a decision is about, held against other deciders until the unit commits. */
  protected abstract findForDecisionTx(tx: T, id: string): ApprovalRow | null;
  /** The pending approvals whose time ran out, held against other deciders until the unit commits. */
  protected abstract dueTx(tx: T): ApprovalRow[];

  /** Park an action (the dispatcher calls this inside the unit that moves its task to awaiting_approval). */
  parkTx(tx: T, r: ParkRequest): ApprovalRow {
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
    this.insertTx(tx, row);
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
    tx: T,
    row: ApprovalRow,
    state: Exclude<ApprovalState, "pending">,
    by: string,
    reason: string | null,
  ): ApprovalRow {
    const decided = { ...row, state, decidedBy: by, decidedAt: tx.now, reason };
    this.settleRowTx(tx, decided);
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
        const row = this.findForDecisionTx(tx, id);
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
      const due = this.dueTx(tx);
      for (const row of due) this.settleTx(tx, row, "expired", "system", "no decision in time");
      return due.length;
    });
  }
}
