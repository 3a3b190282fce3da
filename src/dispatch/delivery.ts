import { newId } from "../core/ids.ts";
import { AppError } from "../errors/index.ts";
import type { Job } from "../store/index.ts";
import type { DeliveryPatch, DeliveryRow, Storage, Tx } from "../store/index.ts";
import { type Span, spanOf } from "../events/envelope.ts";
import type { Attempt as PostResult } from "./post.ts";
import type { TaskTrace } from "./trace.ts";

/**
 * The one writer of delivery state (docs/state-machines.md#deliveries-the-dispatchers-tasks):
 * every new delivery, every move of one, its checkpoints with the spans gathered since the last,
 * its attempts, and the audit entries and `delivery.<state>` outbox entries that go with them,
 * each in the commit of the move itself. It refuses a move the state machine does not have, and
 * never moves a delivery on from a finished state except by an operator's retry or discard.
 */

export type DeliveryState = DeliveryRow["state"];
/** What a checkpoint changes of a delivery. */
export type Patch = DeliveryPatch;
export type Audit = { action: string; decision?: string; details?: Record<string, unknown> };

/** The states a delivery's job never moves it out of. */
export const TERMINAL: ReadonlySet<DeliveryState> = new Set([
  "delivered",
  "dead",
  "denied",
  "quarantined",
  "discarded",
]);

/** The moves a run of a delivery's job may make (the same state again: a checkpoint without a move). */
const NEXT: Readonly<Record<DeliveryState, readonly DeliveryState[]>> = {
  pending: ["delivering", "awaiting_approval", "denied", "quarantined", "dead"],
  awaiting_approval: ["delivering", "denied", "dead"],
  delivering: ["delivering", "retrying", "delivered", "dead"],
  retrying: ["retrying", "delivered", "dead"],
  delivered: [],
  dead: [],
  denied: [],
  quarantined: [],
  discarded: [],
};
/** An operator's retry: only a delivery that gave up. */
const RETRY_FROM: readonly DeliveryState[] = ["dead"];
/** An operator's discard: a delivery that gave up or is still being retried. */
const DISCARD_FROM: readonly DeliveryState[] = ["dead", "retrying"];

/** A move the state machine does not have: a bug in the caller, nothing was written. */
export class RefusedMove extends Error {
  override readonly name = "RefusedMove";
}

/** May a run of the job move a delivery from `from` to `to`? */
export function mayMove(from: DeliveryState, to: DeliveryState): boolean {
  return NEXT[from].includes(to);
}

/** What routing or a replay knows of a new delivery. */
export interface NewDelivery {
  eventId: string;
  tenant: string;
  endpoint: string;
  route: string | null;
  replayOf?: string | null;
  requestedBy?: string | null;
}

export class DeliveryWriter {
  constructor(private readonly storage: Storage) {}

  /**
   * A new delivery, `pending`; or `delivering` with its policy decision and its spans so far when
   * routing decided it (the fast path). Null when the event already has a delivery to that endpoint.
   */
  insertTx(
    tx: Tx,
    d: NewDelivery,
    decided?: { decision: Record<string, unknown>; trace: DeliveryRow["trace"] },
  ): DeliveryRow | null {
    const row: DeliveryRow = {
      id: newId("dlv", tx.now),
      eventId: d.eventId,
      tenant: d.tenant,
      endpoint: d.endpoint,
      route: d.route,
      state: decided ? "delivering" : "pending",
      createdAt: tx.now,
      updatedAt: tx.now,
      attempts: 0,
      lastStatus: null,
      lastError: null,
      decision: decided?.decision ?? null,
      approvalId: null,
      firstAttemptAt: null,
      replayOf: d.replayOf ?? null,
      requestedBy: d.requestedBy ?? null,
      attemptBase: 0,
      trace: decided?.trace ?? [],
    };
    return this.storage.events.insertDeliveryTx(tx, row) ? row : null;
  }

  /**
   * A checkpoint, in one commit: whatever `more` writes, the delivery as `d` with `patch` applied
   * (the patch may depend on what `more` returned), the spans gathered since the last checkpoint,
   * and an audit entry. Resolves with the row as it now is and what `more` returned. A delivery an
   * operator discarded meanwhile stays discarded (the store's checkpoint keeps it).
   */
  checkpoint<T = undefined>(
    d: DeliveryRow,
    trace: TaskTrace,
    patch: Patch | ((r: T | undefined) => Patch),
    audit?: Audit,
    more?: (tx: Tx) => T,
  ): Promise<{ row: DeliveryRow; result: T | undefined }> {
    if (TERMINAL.has(d.state)) return Promise.reject(new RefusedMove(`delivery ${d.id} is ${d.state}: finished`));
    return this.commit(d, trace.take(), null, patch, audit, more);
  }

  /**
   * The checkpoint's commit. `spans` are what the run gathered before it; `last`, when given, is
   * this commit's own span, from the request to write until its statements run (its COMMIT's
   * write and fsync are on /metrics, `agentowl_commit_duration_seconds`): the run's last
   * checkpoint records it without another write of the row.
   */
  private commit<T>(
    d: DeliveryRow,
    spans: Span[],
    last: (() => Span) | null,
    patch: Patch | ((r: T | undefined) => Patch),
    audit?: Audit,
    more?: (tx: Tx) => T,
  ): Promise<{ row: DeliveryRow; result: T | undefined }> {
    if (TERMINAL.has(d.state)) return Promise.reject(new RefusedMove(`delivery ${d.id} is ${d.state}: finished`));
    return this.storage.committer.run((tx) => {
      const result = more?.(tx);
      const row: DeliveryRow = { ...d, ...(typeof patch === "function" ? patch(result) : patch), updatedAt: tx.now };
      if (!mayMove(d.state, row.state))
        throw new RefusedMove(`delivery ${d.id}: no move from ${d.state} to ${row.state}`);
      // A unit the committer runs again writes the same spans (a fresh array each run).
      this.storage.events.checkpointTx(tx, row, last ? [...spans, last()] : spans);
      if (audit) this.auditTx(tx, d, audit);
      if (row.state !== d.state) this.announceTx(tx, row);
      return { row, result };
    });
  }

  /** The audit entry of attempt number `attempt` to `url`, which commits before the request leaves. */
  attemptAuditTx(tx: Tx, d: DeliveryRow, url: string, attempt: number): void {
    this.auditTx(tx, d, attemptAudit(d, url, attempt));
  }

  /** A checkpoint carrying the audit entry of the attempt about to be made, with its audit.log span. */
  async beforeAttempt(
    d: DeliveryRow,
    trace: TaskTrace,
    patch: Patch,
    url: string,
    attempt: number,
  ): Promise<DeliveryRow> {
    const t = trace.begin();
    const { row } = await this.checkpoint(d, trace, patch, attemptAudit(d, url, attempt));
    trace.end(
      t,
      "audit.log",
      "ok",
      `delivery.attempt ${attempt}${patch.state ? `, with the checkpoint ${patch.state}` : ""}`,
    );
    return row;
  }

  /**
   * An attempt made, in one commit: its row, the delivery's outcome (`delivered`, `retrying` or
   * `dead`, with the `delivery.dead` audit entry), and the job's ack when nothing is left to do;
   * without a job, `retryTx` writes the retry's job when it will be retried.
   * Resolves with whether the job was acked (false: its lease was lost, or it will be retried).
   */
  async afterAttempt(
    d: DeliveryRow,
    trace: TaskTrace,
    job: Job | null,
    a: {
      attempt: number;
      startedAt: number;
      result: PostResult;
      dead: boolean;
      retryTx?: (tx: Tx) => void;
    },
  ): Promise<{ state: DeliveryState; lastError: string | null; acked: boolean }> {
    const { result, attempt, dead } = a;
    const lastError = result.ok ? null : (result.error ?? `HTTP ${result.status}`);
    const state = result.ok ? "delivered" : dead ? "dead" : "retrying";
    const t = trace.begin();
    const { result: acked } = await this.commit(
      d,
      trace.take(),
      () => spanOf("state.store", t.at, performance.now() - t.t0, "ok", `${state}, attempt ${attempt} recorded`),
      {
        state,
        attempts: attempt,
        lastStatus: result.status,
        lastError,
        firstAttemptAt: d.firstAttemptAt ?? a.startedAt,
      },
      dead ? { action: "delivery.dead", details: { attempts: attempt, last_error: lastError } } : undefined,
      (tx) => {
        this.storage.events.insertAttemptTx(tx, {
          deliveryId: d.id,
          attempt,
          startedAt: a.startedAt,
          latencyMs: Math.round(result.latencyMs),
          status: result.status,
          errorClass: result.errorClass ?? (result.ok ? null : "http"),
          error: lastError,
          excerpt: result.excerpt.slice(0, 1024),
        });
        const over = result.ok || dead;
        if (job) return over ? tx.ack(job) : false;
        if (!over) a.retryTx?.(tx);
        return false;
      },
    );
    return { state, lastError, acked: acked === true };
  }

  /** An operator's retry of a dead delivery: back to `delivering` under the same webhook-id, with a fresh max_attempts / max_age budget. */
  retryTx(tx: Tx, d: DeliveryRow, actor: string): DeliveryRow {
    const retried = this.storage.events.transitionTx(tx, d.id, RETRY_FROM, {
      state: "delivering",
      attemptBase: d.attempts,
      firstAttemptAt: null,
      requestedBy: actor,
      lastError: null,
    });
    if (!retried)
      throw new AppError(
        "conflict",
        `delivery ${d.id} is ${this.storage.events.deliveryTx(tx, d.id)?.state}: only a dead delivery can be retried (replay its event for a new one)`,
      );
    tx.emit({
      topic: "delivery.retried",
      tenant: d.tenant,
      payload: { id: d.id, event: d.eventId, endpoint: d.endpoint, requested_by: actor },
    });
    this.auditTx(tx, d, { action: "delivery.retry", details: { attempts_so_far: d.attempts } }, actor);
    return retried;
  }

  /** An operator's discard: kept on record, never tried again. */
  discardTx(tx: Tx, d: DeliveryRow, actor: string): DeliveryRow {
    const discarded = this.storage.events.transitionTx(tx, d.id, DISCARD_FROM, {
      state: "discarded",
      requestedBy: actor,
    });
    if (!discarded)
      throw new AppError(
        "conflict",
        `delivery ${d.id} is ${this.storage.events.deliveryTx(tx, d.id)?.state}: only a dead or retrying delivery can be discarded`,
      );
    this.announceTx(tx, discarded);
    this.auditTx(
      tx,
      d,
      { action: "delivery.discard", details: { attempts: d.attempts, last_error: d.lastError } },
      actor,
    );
    return discarded;
  }

  private auditTx(tx: Tx, d: DeliveryRow, a: Audit, actor = "dispatcher"): void {
    this.storage.audit.appendTx(tx, {
      actor,
      tenant: d.tenant,
      action: a.action,
      target: `${d.tenant}/endpoints/${d.endpoint}`,
      decision: a.decision ?? null,
      details: Object.assign({ delivery: d.id, event: d.eventId }, a.details),
    });
  }

  /**
   * A delivery's move to a state others may want to follow (the console, metrics, a later
   * integration) is announced as `delivery.<state>` in the commit of the move itself: counted
   * always, an outbox entry only while a subscriber follows the topic (most deliveries'
   * `delivery.delivered` would be three more rows that nobody reads).
   */
  private announceTx(tx: Tx, d: DeliveryRow): void {
    if (d.state === "pending" || d.state === "delivering") return;
    tx.emit({
      topic: `delivery.${d.state}`,
      ifFollowed: true,
      tenant: d.tenant,
      payload: {
        id: d.id,
        event: d.eventId,
        endpoint: d.endpoint,
        attempts: d.attempts,
        last_status: d.lastStatus,
        replay_of: d.replayOf,
      },
    });
  }
}

function attemptAudit(d: DeliveryRow, url: string, attempt: number): Audit {
  return {
    action: "delivery.attempt",
    details: d.replayOf ? { attempt, url, replay_of: d.replayOf } : { attempt, url },
  };
}
