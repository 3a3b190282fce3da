import { newId } from "../core/ids.ts";
import { type JobHandler, PermanentJobError, RetryLaterError } from "../core/job-runner.ts";
import type { Subscriber } from "../core/outbox-relay.ts";
import { parseDuration } from "../config/index.ts";
import { EVENT_RECEIVED } from "../ingress/http.ts";
import { decide, PolicyCache } from "../policy/engine.ts";
import { policiesFor } from "../policy/load.ts";
import type { Envelope } from "../events/envelope.ts";
import type { EndpointSpec } from "../resources/specs.ts";
import { APPROVAL_DECIDED, type DeliveryRow, type SqliteStorage } from "../store/index.ts";
import { LeasedSecrets } from "../vault/leased.ts";
import type { Vault } from "../vault/vault.ts";
import { Breakers } from "./breaker.ts";
import { postJson, signStandardWebhook } from "./post.ts";
import { RouteTable } from "./route.ts";

/**
 * The dispatcher (SPEC §10, §13; issue 8): routing turns an `event.received` outbox entry into
 * one delivery (the task) per target, and a `delivery.run` job takes each through policy, an
 * approval when the policy asks for one, and signed HTTP attempts with retries until it is
 * delivered, dead, denied or quarantined. The delivery row is the task's checkpoint: a job that
 * runs again (a crash, a retry) starts from the state it finds.
 *
 * Every attempt is preceded by its audit entry, committed before the request leaves.
 */

export const DELIVERY_JOB = "delivery.run";
const DEFAULT_MAX_ATTEMPTS = 8;
/** The job may run more often than the delivery attempts (an open circuit, a parked approval): the dispatcher decides when a delivery is dead, not the queue. */
const JOB_MAX_RUNS = 1000;
const DEFAULT_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 5_000;
const APPROVAL_TTL_MS = 24 * 3_600_000;
const TERMINAL = new Set(["delivered", "dead", "denied", "quarantined"]);
const DEFAULT_MAX_IN_FLIGHT = 4;
/** How soon a delivery that found its endpoint busy looks again. */
const BUSY_RETRY_MS = 250;

export interface DispatcherDeps {
  storage: SqliteStorage;
  vault: Vault;
  now?: () => number;
  breaker?: { threshold: number; cooldownMs: number };
}

export function dispatcher(deps: DispatcherDeps) {
  const { storage } = deps;
  const now = deps.now ?? Date.now;
  const routes = new RouteTable(storage.resources);
  const policies = new PolicyCache();
  const secrets = new LeasedSecrets(deps.vault, now);
  const inFlight = new Map<string, number>();
  const breakers = new Breakers({ threshold: deps.breaker?.threshold ?? 5, cooldownMs: deps.breaker?.cooldownMs ?? 30_000, now });

  const endpointOf = async (tenant: string, name: string) => (await storage.resources.get({ tenant, kind: "endpoints", name }))?.spec as EndpointSpec | undefined;
  const enqueue = (tx: Parameters<Parameters<SqliteStorage["committer"]["run"]>[0]>[0], d: { id: string; tenant: string }, key: string) =>
    tx.enqueue({ kind: DELIVERY_JOB, payload: { id: d.id }, tenant: d.tenant, idempotencyKey: key, maxAttempts: JOB_MAX_RUNS });

  /** event.received → routing → one delivery per target and its job, in one commit. */
  const router: Subscriber = {
    name: "router",
    topics: [EVENT_RECEIVED],
    async handle(entry) {
      const id = (entry.payload as { id?: string })?.id;
      const stored = id ? await storage.events.get(id) : null;
      if (!stored || storage.events.routing(id!)) return;
      const decision = await routes.route(stored.envelope);
        await storage.committer.run((tx) => {
        storage.events.setRoutingTx(tx, id!, { matched: decision.matched, used_default: decision.usedDefault, unrouted: decision.unrouted, at: new Date(tx.now).toISOString() });
        for (const t of decision.targets) {
          const delivery = { id: newId("dlv", tx.now), eventId: id!, tenant: stored.tenant, endpoint: t.endpoint, route: t.route, state: "pending" as const, createdAt: tx.now, updatedAt: tx.now };
          if (storage.events.insertDeliveryTx(tx, delivery)) enqueue(tx, delivery, `delivery:${delivery.id}`);
        }
      });
    },
  };

  /** An approval decided: its parked deliveries run again (and find out which way it went). */
  const approvals: Subscriber = {
    name: "dispatch-approvals",
    topics: [APPROVAL_DECIDED],
    async handle(entry) {
      const approvalId = (entry.payload as { id?: string })?.id;
      if (!approvalId) return;
      const parked = storage.events.deliveriesOfApproval(approvalId).filter((d) => d.state === "awaiting_approval");
      if (!parked.length) return;
      await storage.committer.run((tx) => {
        for (const d of parked) enqueue(tx, d, `delivery:${d.id}:approval:${approvalId}`);
      });
    },
  };

  const settle = (d: DeliveryRow, patch: Parameters<SqliteStorage["events"]["updateDeliveryTx"]>[2], audit?: { action: string; decision?: string; details?: Record<string, unknown> }) =>
    storage.committer.run((tx) => {
      storage.events.updateDeliveryTx(tx, d.id, patch);
      if (audit) storage.audit.appendTx(tx, { actor: "dispatcher", tenant: d.tenant, action: audit.action, target: `${d.tenant}/endpoints/${d.endpoint}`, decision: audit.decision ?? null, details: { delivery: d.id, event: d.eventId, ...audit.details } });
    });

  const run: JobHandler = async (job) => {
    const id = (job.payload as { id?: string }).id;
    let d = id ? storage.events.delivery(id) : null;
    if (!d) throw new PermanentJobError(`delivery ${id} not found`);
    if (TERMINAL.has(d.state)) return;
    const stored = await storage.events.get(d.eventId);
    if (!stored) throw new PermanentJobError(`event ${d.eventId} not found`);
    const endpoint = await endpointOf(d.tenant, d.endpoint);
    if (!endpoint) {
      await settle(d, { state: "dead", lastError: `endpoint ${d.endpoint} no longer exists` }, { action: "delivery.dead", details: { reason: "endpoint gone" } });
      return;
    }

    // 1. Policy, once: the decision is part of the checkpoint.
    if (d.state === "pending") {
      const decision = decide(await policiesFor(storage.resources, policies, d.tenant), stored.envelope, { kind: "dispatch", target: d.endpoint });
      const record = { effect: decision.effect, policy: decision.policy && { name: decision.policy.name, version: decision.policy.version, global: decision.policy.tenant === "*" }, rule: decision.rule, reason: decision.reason };
      if (decision.effect === "deny" || decision.effect === "quarantine") {
        await settle(d, { state: decision.effect === "deny" ? "denied" : "quarantined", decision: record }, { action: `delivery.${decision.effect}`, decision: decision.effect, details: { policy: record.policy, rule: record.rule } });
        return;
      }
      if (decision.effect === "require_approval") {
        const parked = await storage.approvals.park({ tenant: d.tenant, eventId: d.eventId, action: { kind: "dispatch", target: d.endpoint, delivery: d.id }, policy: { ...record.policy, rule: record.rule, reason: record.reason }, expiresInMs: APPROVAL_TTL_MS, onExpiry: "deny" });
        await settle(d, { state: "awaiting_approval", decision: record, approvalId: parked.id });
        return;
      }
      await settle(d, { state: "delivering", decision: record });
      d = storage.events.delivery(d.id)!;
    }

    // 2. A parked delivery goes on only with a decision that lets it.
    if (d.state === "awaiting_approval") {
      const approval = d.approvalId ? await storage.approvals.get(d.approvalId) : null;
      if (!approval || approval.state === "pending") return;
      const approved = approval.state === "approved" || (approval.state === "expired" && approval.onExpiry === "approve");
      if (!approved) {
        await settle(d, { state: "denied" }, { action: "delivery.deny", decision: "deny", details: { approval: approval.id } });
        return;
      }
      await settle(d, { state: "delivering" });
      d = storage.events.delivery(d.id)!;
    }

    // 3. One attempt: endpoint capacity, circuit, max age, audit entry first, signed POST, the attempt on record.
    const key = `${d.tenant}/${d.endpoint}`;
    const busy = inFlight.get(key) ?? 0;
    // A busy endpoint gives its worker back: the job comes again shortly, other endpoints go on.
    if (busy >= (endpoint.max_in_flight ?? DEFAULT_MAX_IN_FLIGHT)) throw new RetryLaterError(`endpoint ${d.endpoint}: ${busy} deliveries in flight`, BUSY_RETRY_MS);
    inFlight.set(key, busy + 1);
    try {
      return await attemptOnce(d, endpoint, stored.envelope, key);
    } finally {
      const left = (inFlight.get(key) ?? 1) - 1;
      if (left > 0) inFlight.set(key, left);
      else inFlight.delete(key);
    }
  };

  const attemptOnce = async (d: DeliveryRow, endpoint: EndpointSpec, envelope: Envelope, key: string): Promise<void> => {
    const breaker = breakers.for(key);
    if (!breaker.tryAcquire()) throw new RetryLaterError(`endpoint ${d.endpoint}: circuit open`, Math.max(1000, (breaker.view().retryAt ?? now()) - now()));
    const maxAge = endpoint.retry?.max_age ? parseDuration(endpoint.retry.max_age) : null;
    if (maxAge !== null && d.firstAttemptAt !== null && now() - d.firstAttemptAt > maxAge) {
      await settle(d, { state: "dead", lastError: `gave up after ${endpoint.retry!.max_age}` }, { action: "delivery.dead", details: { reason: "max_age", attempts: d.attempts } });
      return;
    }
    const attempt = d.attempts + 1;
    const startedAt = now();
    await storage.audit.append({ actor: "dispatcher", tenant: d.tenant, action: "delivery.attempt", target: `${d.tenant}/endpoints/${d.endpoint}`, details: { delivery: d.id, event: d.eventId, attempt, url: endpoint.url } });
    const body = JSON.stringify(envelope);
    const [secret] = endpoint.signing_secret ? await secrets.values(endpoint.signing_secret, d.tenant, `dispatch:${d.tenant}/${d.endpoint}`) : [];
    const headers = secret ? signStandardWebhook(secret, d.id, Math.floor(now() / 1000), body) : { "webhook-id": d.id, "webhook-timestamp": String(Math.floor(now() / 1000)) };
    const timeout = endpoint.timeout ? (parseDuration(endpoint.timeout) ?? DEFAULT_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
    const result = await postJson(endpoint.url, body, headers, { allowPublic: endpoint.allow_public === true, connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, timeout), timeoutMs: timeout, now });
    const lastError = result.ok ? null : (result.error ?? `HTTP ${result.status}`);
    const maxAttempts = endpoint.retry?.max_attempts ?? DEFAULT_MAX_ATTEMPTS;
    const dead = !result.ok && (attempt >= maxAttempts || result.errorClass === "egress");
    await storage.committer.run((tx) => {
      storage.events.insertAttemptTx(tx, { deliveryId: d.id, attempt, startedAt, latencyMs: Math.round(result.latencyMs), status: result.status, errorClass: result.errorClass ?? (result.ok ? null : "http"), error: lastError, excerpt: result.excerpt.slice(0, 1024) });
      storage.events.updateDeliveryTx(tx, d.id, { state: result.ok ? "delivered" : dead ? "dead" : "failed", attempts: attempt, lastStatus: result.status, lastError, firstAttemptAt: d.firstAttemptAt ?? startedAt });
      if (dead) storage.audit.appendTx(tx, { actor: "dispatcher", tenant: d.tenant, action: "delivery.dead", target: `${d.tenant}/endpoints/${d.endpoint}`, details: { delivery: d.id, event: d.eventId, attempts: attempt, last_error: lastError } });
    });
    if (result.ok) {
      breaker.success();
      return;
    }
    if (result.errorClass !== "egress") breaker.failure();
    if (dead) return;
    // Retry: when the endpoint said, else the queue's exponential backoff with jitter.
    if (result.retryAfterMs !== null) throw new RetryLaterError(`HTTP ${result.status}`, Math.max(1000, result.retryAfterMs));
    throw new Error(lastError ?? "delivery failed");
  };

  return { router, approvals, run, breakers, inFlight: (key: string) => inFlight.get(key) ?? 0 };
}
