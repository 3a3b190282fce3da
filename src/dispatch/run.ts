import { parseDuration } from "../config/index.ts";
import type { EndpointSpec } from "../control/resources/specs.ts";
import type { Envelope } from "../events/envelope.ts";
import type { ApprovalRow, DeliveryRow, Job } from "../store/index.ts";
import type { JobHandler } from "../workers/job-runner.ts";
import { attempt } from "./attempt.ts";
import { agentOf, type DispatchContext } from "./context.ts";
import { evaluate } from "./decide.ts";
import { type Patch, TERMINAL } from "./delivery.ts";
import { busyRetryMs } from "./endpoint-slots.ts";
import { type AttemptResult, attemptedOf, toJobResult } from "./result.ts";
import { TaskTrace } from "./trace.ts";

const APPROVAL_TTL_MS = 24 * 3_600_000;
/** How long a delivery's job waits in line for a place at its endpoint before it gives its worker back. */
const BUSY_WAIT_MS = 2_000;
/** Why a delivery's job was put back without an attempt (its last_error), read again by `waitingFor` (src/dispatch/status.ts). */
export const BUSY = "deliveries in flight";
export const CIRCUIT_OPEN = "circuit open";

/**
 * The `delivery.run` job. The endpoint's capacity and circuit come first (in memory: a busy or
 * open endpoint gives the worker back before anything is written); then policy, once; then one
 * commit that holds the decision, the move to `delivering` and the attempt's audit entry; the
 * signed POST; and one commit that records the attempt, the outcome and the job's ack. The
 * delivery row is the checkpoint: a run again (a crash, a retry) starts from the state it finds.
 */
export function deliveryRun(ctx: DispatchContext): JobHandler {
  return async (job) => toJobResult(await runOnce(ctx, job));
}

async function runOnce(ctx: DispatchContext, job: Job): Promise<AttemptResult> {
  const { storage } = ctx;
  const id = (job.payload as { id?: string }).id;
  const d = id ? await storage.events.getDelivery(id) : null;
  if (!d) return { kind: "dead", reason: `delivery ${id} not found`, recorded: false, acked: false, attempted: null };
  if (TERMINAL.has(d.state)) return { kind: "settled", reason: d.state };
  const stored = await storage.events.get(d.eventId);
  if (!stored)
    return { kind: "dead", reason: `event ${d.eventId} not found`, recorded: false, acked: false, attempted: null };
  const trace = new TaskTrace(ctx.clock);
  const endpoint = await ctx.endpoint(d.tenant, d.endpoint);
  if (!endpoint) {
    const agent = agentOf(d.endpoint);
    const reason =
      agent === null ? `endpoint ${d.endpoint} no longer exists` : `no agent ${agent} is claimed in tenant ${d.tenant}`;
    await ctx.deliveries.checkpoint(
      d,
      trace,
      { state: "dead", lastError: reason },
      { action: "delivery.dead", details: { reason: agent === null ? "endpoint gone" : "agent not claimed" } },
    );
    return { kind: "dead", reason, recorded: true, acked: false, attempted: null };
  }
  // A parked delivery waits for its decision without taking a place.
  if (d.state === "awaiting_approval") {
    const approval = d.approvalId ? await storage.approvals.get(d.approvalId) : null;
    if (!approval || approval.state === "pending") return { kind: "settled", reason: "awaiting approval" };
  }

  const place = await ctx.gate.wait(d, endpoint, BUSY_WAIT_MS);
  // A busy endpoint gives its worker back: the job comes again shortly, other endpoints go on.
  if (place === "busy") {
    // Runs of this job that found no place since the delivery's last attempt.
    const bounces = Math.max(0, job.attempt - 1 - d.attempts);
    return {
      kind: "retry",
      reason: `endpoint ${d.endpoint}: ${BUSY}`,
      delayMs: busyRetryMs(bounces, ctx.random),
      wait: true,
      attempted: null,
    };
  }
  if (place === "open") {
    const now = ctx.clock.now();
    return {
      kind: "retry",
      reason: `endpoint ${d.endpoint}: ${CIRCUIT_OPEN}`,
      delayMs: Math.max(
        1000,
        (ctx.breakers.for(`${d.tenant}/${d.endpoint}`, endpoint.url).view().retryAt ?? now) - now,
      ),
      wait: true,
      attempted: null,
    };
  }
  let result: AttemptResult | null = null;
  try {
    result = await decideAndAttempt(ctx, job, d, endpoint, stored.envelope, trace);
    return result;
  } finally {
    place.release(attemptedOf(result));
  }
}

async function decideAndAttempt(
  ctx: DispatchContext,
  job: Job,
  d: DeliveryRow,
  endpoint: EndpointSpec,
  envelope: Envelope,
  trace: TaskTrace,
): Promise<AttemptResult> {
  const { storage, deliveries } = ctx;
  const patch: Patch = {};
  // 1. Policy, once: the decision is part of the checkpoint.
  if (d.state === "pending") {
    const { decision, record } = await evaluate(ctx, d, envelope, trace);
    if (decision.effect === "deny" || decision.effect === "quarantine") {
      await deliveries.checkpoint(
        d,
        trace,
        { state: decision.effect === "deny" ? "denied" : "quarantined", decision: record },
        {
          action: `delivery.${decision.effect}`,
          decision: decision.effect,
          details: { policy: record.policy, rule: record.rule },
        },
      );
      return { kind: "settled", reason: decision.effect };
    }
    if (decision.effect === "require_approval") {
      // The approval and the parked state in one commit: a crash cannot park it twice.
      await deliveries.checkpoint<ApprovalRow>(
        d,
        trace,
        (parked) => ({ state: "awaiting_approval", decision: record, approvalId: parked!.id }),
        undefined,
        (tx) =>
          storage.approvals.parkTx(tx, {
            tenant: d.tenant,
            eventId: d.eventId,
            action: { kind: "dispatch", target: d.endpoint, delivery: d.id },
            policy: {
              ...record.policy,
              rule: record.rule,
              ...(decision.ruleName ? { rule_name: decision.ruleName } : {}),
              reason: record.reason,
            },
            expiresInMs: APPROVAL_TTL_MS,
            onExpiry: "deny",
          }),
      );
      return { kind: "settled", reason: "awaiting approval" };
    }
    Object.assign(patch, { state: "delivering", decision: record });
  }

  // 2. A parked delivery goes on only with a decision that lets it.
  if (d.state === "awaiting_approval") {
    const approval = (await storage.approvals.get(d.approvalId!))!;
    const approved = approval.state === "approved" || (approval.state === "expired" && approval.onExpiry === "approve");
    trace.push(
      "approval.wait",
      approval.createdAt,
      (approval.decidedAt ?? ctx.clock.now()) - approval.createdAt,
      approved ? "ok" : "error",
      `${approval.state}${approval.decidedBy ? ` by ${approval.decidedBy}` : ""}`,
    );
    if (!approved) {
      await deliveries.checkpoint(
        d,
        trace,
        { state: "denied" },
        { action: "delivery.deny", decision: "deny", details: { approval: approval.id } },
      );
      return { kind: "settled", reason: "denied by its approval" };
    }
    patch.state = "delivering";
  }

  // 3. Max age, counted from the first attempt (or the latest operator retry).
  const maxAge = endpoint.retry?.max_age ? parseDuration(endpoint.retry.max_age) : null;
  if (maxAge !== null && d.firstAttemptAt !== null && ctx.clock.now() - d.firstAttemptAt > maxAge) {
    const reason = `gave up after ${endpoint.retry!.max_age}`;
    await deliveries.checkpoint(
      d,
      trace,
      { ...patch, state: "dead", lastError: reason },
      { action: "delivery.dead", details: { reason: "max_age", attempts: d.attempts } },
    );
    return { kind: "dead", reason, recorded: true, acked: false, attempted: null };
  }

  // 4. The attempt's audit entry, committed with the checkpoint, before anything leaves.
  const n = d.attempts + 1;
  const started = await deliveries.beforeAttempt(d, trace, patch, endpoint.url, n);
  return attempt(ctx, job, started, endpoint, envelope, trace, n);
}
