import { parseDuration } from "../config/index.ts";
import { jsonOnce } from "../core/json-once.ts";
import type { EndpointSpec } from "../control/resources/specs.ts";
import type { Envelope } from "../events/envelope.ts";
import type { DeliveryRow, Job } from "../store/index.ts";
import { DEFAULT_BACKOFF, retryDelay } from "../core/backoff.ts";
import { agentOf, type DispatchContext, DEFAULT_TIMEOUT_MS, deliveryJob } from "./context.ts";
import { type Attempt, postJson, signStandardWebhook } from "./post.ts";
import type { AttemptResult } from "./result.ts";
import type { TaskTrace } from "./trace.ts";

const DEFAULT_MAX_ATTEMPTS = 8;
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * One attempt whose audit entry is committed: the signed POST (for an `agent:<name>` target, the
 * task over the runtime's socket, src/dispatch/context.ts `AgentTargets`) over the endpoint's kept-alive
 * connection, then the attempt, the outcome and (when nothing is left to do) the job's ack in one
 * commit. Dead at `max_attempts` or when the egress guard refused; else a retry when the
 * endpoint said (Retry-After), or after the queue's backoff. Without a job (the fast path on
 * SQLite, `ctx.jobless`) a retry's job, due when the queue would have scheduled it, goes in that
 * same commit.
 */
export async function attempt(
  ctx: DispatchContext,
  job: Job | null,
  d: DeliveryRow,
  endpoint: EndpointSpec,
  envelope: Envelope,
  trace: TaskTrace,
  n: number,
): Promise<AttemptResult> {
  const timeout = endpoint.timeout ? (parseDuration(endpoint.timeout) ?? DEFAULT_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
  const agent = agentOf(d.endpoint);
  let startedAt = ctx.clock.now();
  let result: Attempt;
  if (agent === null) ({ startedAt, result } = await post(ctx, d, endpoint, envelope, trace, timeout));
  else if (ctx.targets) result = await ctx.targets.deliverToAgent(d.tenant, agent, d, envelope, timeout, trace);
  else result = noPool(agent);
  const failure = result.ok ? null : (result.error ?? `HTTP ${result.status}`);
  const outcome = result.status
    ? `HTTP ${result.status}`
    : agent !== null && result.ok
      ? "done"
      : (result.errorClass ?? "error");
  trace.push(
    agent === null ? "delivery" : "agent.dispatch",
    startedAt,
    result.latencyMs,
    result.ok ? "ok" : "error",
    `attempt ${n}: ${outcome}${result.ok ? "" : ` ${failure}`}`,
  );
  const maxAttempts = endpoint.retry?.max_attempts ?? DEFAULT_MAX_ATTEMPTS;
  const dead = !result.ok && (n - d.attemptBase >= maxAttempts || result.errorClass === "egress");
  const { lastError, acked } = await ctx.deliveries.afterAttempt(d, trace, job, {
    attempt: n,
    startedAt,
    result,
    dead,
    retryTx: job ? undefined : (tx) => tx.enqueue(retryJob(ctx, d, tx.now, result)),
  });
  const attempted = { ok: result.ok, errorClass: result.errorClass };
  if (result.ok) return { kind: "delivered", acked, attempted };
  if (dead) return { kind: "dead", reason: lastError ?? "delivery failed", recorded: true, acked, attempted };
  // Retry: when the endpoint said, else the queue's exponential backoff with jitter.
  return result.retryAfterMs !== null
    ? {
        kind: "retry",
        reason: `HTTP ${result.status}`,
        delayMs: Math.max(1000, result.retryAfterMs),
        wait: false,
        attempted,
      }
    : { kind: "retry", reason: lastError ?? "delivery failed", delayMs: null, wait: false, attempted };
}

/** The signed POST of the envelope to an endpoint. */
async function post(
  ctx: DispatchContext,
  d: DeliveryRow,
  endpoint: EndpointSpec,
  envelope: Envelope,
  trace: TaskTrace,
  timeout: number,
): Promise<{ startedAt: number; result: Attempt }> {
  // The text the event's row holds (src/core/json-once.ts): the envelope is not serialized again.
  const body = jsonOnce(envelope);
  let secret: string | undefined;
  let leased: string[] | undefined;
  if (endpoint.signing_secret) {
    const t = trace.begin();
    leased = await ctx.secrets.values(endpoint.signing_secret, d.tenant, `dispatch:${d.tenant}/${d.endpoint}`);
    secret = leased[0];
    trace.end(t, "secrets.lease", "ok", endpoint.signing_secret);
  }
  const startedAt = ctx.clock.now();
  const headers: Record<string, string> = secret
    ? signStandardWebhook(secret, d.id, Math.floor(startedAt / 1000), body, leased)
    : { "webhook-id": d.id, "webhook-timestamp": String(Math.floor(startedAt / 1000)) };
  // A replay is a new delivery (its own webhook-id) that says which one it repeats: never a silent duplicate.
  if (d.replayOf) headers["agentowl-replay-of"] = d.replayOf;
  const result = await postJson(endpoint.url, body, headers, {
    allowPublic: endpoint.allow_public === true,
    connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, timeout),
    timeoutMs: timeout,
    clock: ctx.clock,
    agent: ctx.connections.for(d.tenant, d.endpoint, endpoint),
  });
  return { startedAt, result };
}

/**
 * The job of a jobless fast attempt's retry, due when the queue would have scheduled its job's
 * first retry (src/core/backoff.ts, a Retry-After the endpoint sent honoured).
 */
export function retryJob(ctx: DispatchContext, d: DeliveryRow, now: number, result?: Attempt) {
  const asked = result && result.retryAfterMs !== null ? Math.max(1000, result.retryAfterMs) : undefined;
  return { ...deliveryJob(d, `delivery:${d.id}`), runAt: now + retryDelay(1, ctx.random, DEFAULT_BACKOFF, asked) };
}

function noPool(agent: string): Attempt {
  return {
    ok: false,
    status: null,
    latencyMs: 0,
    excerpt: "",
    errorClass: "connect",
    error: `agent ${agent}: no agent pool in this appliance`,
    retryAfterMs: null,
    remoteAddress: null,
  };
}
