import type { Agent } from "node:http";
import { newId } from "../core/ids.ts";
import { type JobHandler, PermanentJobError, RetryLaterError } from "../workers/job-runner.ts";
import type { Job } from "../store/index.ts";
import type { Subscriber } from "../workers/outbox-relay.ts";
import type { OutboxEntry } from "../store/index.ts";
import { parseDuration } from "../config/index.ts";
import { EVENT_RECEIVED, type EventRouting } from "../events/handoff.ts";
import { decide, PolicyCache } from "../policy/engine.ts";
import { policiesFor } from "../policy/load.ts";
import { type Envelope, type Span, spanOf, spanSince } from "../events/envelope.ts";
import { AppError } from "../errors/index.ts";
import type { SqliteTx as Tx } from "../store/index.ts";
import type { EndpointSpec } from "../control/resources/specs.ts";
import { APPROVAL_DECIDED, type ApprovalRow, type DeliveryRow, type SqliteStorage } from "../store/index.ts";
import { LeasedSecrets } from "../vault/leased.ts";
import type { Vault } from "../vault/vault.ts";
import { Breakers } from "./breaker.ts";
import { type Attempt as PostResult, keepAliveAgent, postJson, signStandardWebhook } from "./post.ts";
import { ConfigCache, SpecCache } from "../control/resources/cache.ts";
import { ENDPOINT_URL_CHANGED } from "../control/service.ts";
import { type RouteDecision, RouteTable } from "../route/route.ts";

/**
 * The dispatcher (docs/state-machines.md, §13; issue 8): routing turns an `event.received` outbox entry into
 * one delivery (the task) per target, and a `delivery.run` job takes each through policy, an
 * approval when the policy asks for one, and signed HTTP attempts with retries until it is
 * delivered, dead, denied or quarantined. The delivery row is the task's checkpoint: a job that
 * runs again (a crash, a retry) starts from the state it finds.
 *
 * Every attempt is preceded by its audit entry, committed before the request leaves.
 */

export const DELIVERY_JOB = "delivery.run";

/** The spans of one run of a task, written with its next checkpoint (docs/architecture.md's timeline). */
class TaskTrace {
  private spans: Span[] = [];
  constructor(private readonly now: () => number) {}
  begin(): { at: number; t0: number } {
    return { at: this.now(), t0: performance.now() };
  }
  end(t: { at: number; t0: number }, name: string, outcome: Span["outcome"], detail?: string): void {
    this.push(name, t.at, performance.now() - t.t0, outcome, detail);
  }
  push(name: string, at: number, ms: number, outcome: Span["outcome"], detail?: string): void {
    this.spans.push(spanOf(name, at, ms, outcome, detail));
  }
  take(): Span[] {
    return this.spans.splice(0);
  }
  /** The spans so far, left in place. */
  peek(): Span[] {
    return [...this.spans];
  }
}
const DEFAULT_MAX_ATTEMPTS = 8;
/** The job may run more often than the delivery attempts (an open circuit, a parked approval): the dispatcher decides when a delivery is dead, not the queue. */
const JOB_MAX_RUNS = 1_000_000_000;
const DEFAULT_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 5_000;
const APPROVAL_TTL_MS = 24 * 3_600_000;
const TERMINAL = new Set(["delivered", "dead", "denied", "quarantined", "discarded"]);
const DEFAULT_MAX_IN_FLIGHT = 4;
/** How soon a delivery that found its endpoint busy looks again. */
const BUSY_RETRY_MS = 250;
/** A delivery that keeps finding its endpoint busy (a hung endpoint, a long backlog) looks again less often, up to this. */
const BUSY_RETRY_MAX_MS = 2_000;
/** How long a delivery's job waits in line for a place at its endpoint before it gives its worker back. */
const BUSY_WAIT_MS = 2_000;
/** A kept-alive connection nobody used for this long is closed. */
const IDLE_SOCKET_MS = 15_000;
const DEFAULT_VISIBILITY_MS = 5 * 60_000;
/** Why a delivery's job was put back without an attempt (its last_error), read again by `waitingFor`. */
const BUSY = "deliveries in flight";
const CIRCUIT_OPEN = "circuit open";
/** The states in which a delivery may have a job waiting to run. */
const WAITING_STATES = ["pending", "delivering", "retrying"] as const;

/** What a delivery that is not finished waits for, as the API and CLI show it. */
export type Waiting =
  | { reason: "approval"; approval_id: string | null; until: number | null }
  | { reason: "circuit_open"; until: number | null }
  | { reason: "endpoint_busy"; until: number }
  | { reason: "retry"; until: number; last_error: string | null }
  | { reason: "attempt_in_progress"; until: null }
  | { reason: "worker"; until: null };

export interface DispatcherDeps {
  storage: SqliteStorage;
  vault: Vault;
  /** Who holds the fast path's job leases (as the job runner's owner), and for how long. */
  owner?: string;
  visibilityMs?: number;
  now?: () => number;
  breaker?: { threshold: number; cooldownMs: number };
  /** The job runner's concurrency: how many deliveries may wait in one endpoint's line. */
  workers?: number;
}

export function dispatcher(deps: DispatcherDeps) {
  const { storage } = deps;
  const now = deps.now ?? Date.now;
  const routes = new RouteTable(storage.resources);
  const policies = new PolicyCache();
  const secrets = new LeasedSecrets(deps.vault, now);
  const inFlight = new Map<string, number>();
  /** Per endpoint, the jobs waiting in line for a place, oldest first (each a hand-over). */
  const waiting = new Map<string, (() => void)[]>();
  const breakers = new Breakers({
    threshold: deps.breaker?.threshold ?? 5,
    cooldownMs: deps.breaker?.cooldownMs ?? 30_000,
    now,
  });

  // The configuration every delivery reads, kept until it changes (src/control/resources/cache.ts).
  const endpoints = new SpecCache<EndpointSpec>(storage.resources, "endpoints");
  const endpointOf = async (tenant: string, name: string) => (await endpoints.get(tenant, name)) ?? undefined;
  // One keep-alive agent per endpoint, URL and egress setting: a connection is checked by the
  // egress guard when it is made, and reused while the endpoint keeps it open.
  const agents = new Map<string, Agent>();
  const agentFor = (d: DeliveryRow, endpoint: EndpointSpec) => {
    const id = `${d.tenant}/${d.endpoint}|${endpoint.url}|${endpoint.allow_public === true}|${endpoint.max_in_flight ?? DEFAULT_MAX_IN_FLIGHT}`;
    let agent = agents.get(id);
    if (!agent) {
      // The endpoint changed: its old connections serve the attempts still on them, then close.
      for (const [k, old] of agents) {
        if (k.startsWith(`${d.tenant}/${d.endpoint}|`)) {
          agents.delete(k);
          setTimeout(() => old.destroy(), DEFAULT_TIMEOUT_MS + IDLE_SOCKET_MS).unref();
        }
      }
      agent = keepAliveAgent(endpoint.url, {
        maxSockets: endpoint.max_in_flight ?? DEFAULT_MAX_IN_FLIGHT,
        idleMs: IDLE_SOCKET_MS,
      });
      agents.set(id, agent);
    }
    return agent;
  };
  const tenantPolicies = new ConfigCache(storage.resources, (tenant) =>
    policiesFor(storage.resources, policies, tenant),
  );
  const enqueue = (tx: Tx, d: { id: string; tenant: string }, key: string) =>
    tx.enqueue({
      kind: DELIVERY_JOB,
      payload: { id: d.id },
      tenant: d.tenant,
      idempotencyKey: key,
      maxAttempts: JOB_MAX_RUNS,
    });

  type Target = {
    endpoint: string;
    route: string | null;
    fast?: { spec: EndpointSpec; record: Record<string, unknown>; trace: TaskTrace; slot: Slot };
  };
  type Routed = {
    id: string;
    tenant: string;
    envelope: Envelope;
    decision: RouteDecision;
    span: Span;
    targets: Target[];
  };
  type Started = { job: Job; row: DeliveryRow; spec: EndpointSpec; envelope: Envelope; trace: TaskTrace; slot: Slot };

  /**
   * Routing's first half, nothing written: the event's routes, and for each target whose endpoint
   * has a free slot and a closed circuit, its policy decision. A target the policy allows takes
   * the fast path: it is decided in the routing commit itself (state `delivering`, the decision,
   * the first attempt's audit entry) with its job created leased to this process, and its attempt
   * starts as soon as that commit is on disk: no claim, no worker to wait for, two commits fewer.
   * Any other target gets a pending delivery and an ordinary job. A fast attempt that fails is
   * failed on its job like any other (the queue schedules the retry), and one cut off by a crash
   * is recovered with the job's lease.
   */
  const planRoute = async (envelope: Envelope): Promise<Routed> => {
    const { id, tenant } = envelope;
    const routedAt = now();
    const t0 = performance.now();
    const decision = await routes.route(envelope);
    const span = spanSince(
      "route",
      routedAt,
      t0,
      decision.unrouted ? "skipped" : "ok",
      decision.unrouted ? "unrouted: no route matched" : decision.targets.map((t) => t.endpoint).join(", "),
    );
    const targets: Target[] = [];
    const routed: Routed = { id, tenant, envelope, decision, span, targets };
    try {
      for (const t of decision.targets) {
        const spec = await endpointOf(tenant, t.endpoint);
        const slot = spec ? takeSlot({ tenant, endpoint: t.endpoint }, spec) : "busy";
        if (typeof slot === "string") {
          targets.push(t);
          continue;
        }
        const trace = new TaskTrace(now);
        // Pushed first, so a policy that fails to load still frees the slot (below).
        const target: Target = { ...t, fast: { spec: spec!, record: {}, trace, slot } };
        targets.push(target);
        const { decision: verdict, record } = await evaluate({ tenant, endpoint: t.endpoint }, envelope, trace);
        if (verdict.effect !== "allow") {
          slot.release(null);
          delete target.fast;
          continue;
        }
        target.fast!.record = record;
      }
    } catch (e) {
      finishRouting([routed], [], false, 0, 0);
      throw e;
    }
    return routed;
  };

  const routingRecord = (r: Routed, at: number) => ({
    matched: r.decision.matched,
    used_default: r.decision.usedDefault,
    unrouted: r.decision.unrouted,
    at: new Date(at).toISOString(),
  });

  /** Routing's writes for one event whose row exists in this transaction: its deliveries and their jobs; the fast attempts to start once it commits. */
  const writeRoutedTx = (tx: Tx, r: Routed): Started[] => {
    const started: Started[] = [];
    for (const t of r.targets) {
      // A fast-path delivery is inserted decided: `delivering`, its decision and its spans so far
      // (policy.eval; dropped from memory once committed: a batch run again writes them again).
      const pending: DeliveryRow = {
        id: newId("dlv", tx.now),
        eventId: r.id,
        tenant: r.tenant,
        endpoint: t.endpoint,
        route: t.route,
        state: "pending",
        createdAt: tx.now,
        updatedAt: tx.now,
        attempts: 0,
        lastStatus: null,
        lastError: null,
        decision: null,
        approvalId: null,
        firstAttemptAt: null,
        replayOf: null,
        requestedBy: null,
        attemptBase: 0,
        trace: [],
      };
      const row: DeliveryRow = t.fast
        ? { ...pending, state: "delivering", decision: t.fast.record, trace: t.fast.trace.peek() }
        : pending;
      if (!storage.events.insertDeliveryTx(tx, row)) continue;
      if (!t.fast) {
        enqueue(tx, row, `delivery:${row.id}`);
        continue;
      }
      const job = storage.queue.enqueueLeasedTx(
        tx,
        {
          kind: DELIVERY_JOB,
          payload: { id: row.id },
          tenant: r.tenant,
          idempotencyKey: `delivery:${row.id}`,
          maxAttempts: JOB_MAX_RUNS,
        },
        { owner: deps.owner ?? null, visibilityMs: deps.visibilityMs ?? DEFAULT_VISIBILITY_MS },
      );
      auditTx(tx, row, attemptAudit(row, t.fast.spec, 1));
      started.push({ job: job!, row, spec: t.fast.spec, envelope: r.envelope, trace: t.fast.trace, slot: t.fast.slot });
    }
    return started;
  };

  /** After the routing commit (or its failure): the fast attempts start, and slots reserved for targets that did not start (a repeat, a failed commit) are free again. */
  const finishRouting = (
    routed: readonly Routed[],
    started: readonly Started[],
    committed: boolean,
    committedAt: number,
    ms: number,
  ) => {
    const going = new Set(committed ? started.map((x) => x.slot) : []);
    for (const r of routed) for (const t of r.targets) if (t.fast && !going.has(t.fast.slot)) t.fast.slot.release(null);
    if (!committed) return;
    for (const x of started) {
      x.trace.take();
      x.trace.push(
        "audit.log",
        committedAt,
        ms,
        "ok",
        "delivery.attempt 1, with the checkpoint delivering (in the routing commit)",
      );
      track(fastAttempt(x.job, x.row, x.spec, x.envelope, x.trace, x.slot));
    }
  };

  /**
   * event.received → routing → one delivery per target and its job, for events that were not
   * routed at their commit (src/events/handoff.ts). A batch of entries (what the relay read at
   * once) is routed into one commit: the outbox's at-least-once and the unique (event, endpoint)
   * index make a repeat add nothing.
   */
  const routeEvents = async (entries: OutboxEntry[]) => {
    const envelopes: Envelope[] = [];
    const seen = new Set<string>();
    for (const entry of entries) {
      const id = (entry.payload as { id?: string })?.id;
      if (!id || seen.has(id)) continue;
      seen.add(id);
      const stored = storage.events.unroutedEvent(id);
      if (stored) envelopes.push(stored.envelope);
    }
    if (!envelopes.length) return;
    // The same plan as at an ingress's commit; here the event's row exists and gets its routing.
    const plan = await inline.plan(envelopes);
    let committed = false;
    try {
      await storage.committer.run((tx) => {
        for (const e of envelopes) {
          const { routing, span } = plan.routingTx(tx, e.id)!;
          storage.events.setRoutingTx(tx, e.id, routing, [span]);
          plan.writeTx(tx, e.id);
        }
      });
      committed = true;
    } finally {
      plan.done(committed);
    }
  };

  /** Routing at the ingress's commit (src/events/handoff.ts): planned ahead, written by the unit of work that inserts the event. */
  const inline: EventRouting = {
    async plan(envelopes) {
      const routed = new Map<string, Routed>();
      try {
        for (const e of envelopes) routed.set(e.id, await planRoute(e));
      } catch (e) {
        finishRouting([...routed.values()], [], false, 0, 0);
        throw e;
      }
      const startedBy = new Map<string, Started[]>();
      // The commit's start, for the fast attempts' audit.log span: the transaction's.
      let committedAt = 0;
      let committing = 0;
      let finished = false;
      return {
        routingTx(tx, id) {
          const r = routed.get(id);
          if (!r) return null;
          // A batch run again starts this event's writes over.
          startedBy.delete(id);
          committedAt = tx.now;
          committing = performance.now();
          return { routing: routingRecord(r, tx.now), span: r.span };
        },
        writeTx(tx, id) {
          const r = routed.get(id);
          if (r) startedBy.set(id, writeRoutedTx(tx, r));
        },
        done(committed) {
          if (finished) return;
          finished = true;
          finishRouting(
            [...routed.values()],
            [...startedBy.values()].flat(),
            committed,
            committedAt,
            performance.now() - committing,
          );
        },
      };
    },
  };

  /** A fast-path attempt: as a job run would do it, failing the job for a retry when it fails. */
  const fastAttempt = async (
    job: Job,
    d: DeliveryRow,
    spec: EndpointSpec,
    envelope: Envelope,
    trace: TaskTrace,
    slot: Slot,
  ) => {
    let outcome: Outcome = null;
    try {
      outcome = await attemptNow(job, d, spec, envelope, trace, 1);
      if (outcome.thenThrow) {
        const e = outcome.thenThrow;
        await storage.queue.fail(job, {
          message: `${e.name}: ${e.message}`,
          retryable: true,
          retryAfterMs: e instanceof RetryLaterError ? e.retryAfterMs : undefined,
        });
      }
    } catch (e) {
      // Nothing went out (no secret, a storage error): the queue tries again later.
      await storage.queue.fail(job, { message: String((e as Error)?.message ?? e), retryable: true }).catch(() => {});
    } finally {
      slot.release(outcome);
    }
  };

  const fast = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    fast.add(p);
    void p.finally(() => fast.delete(p));
  };

  const router: Subscriber = {
    name: "router",
    topics: [EVENT_RECEIVED],
    handle: (entry) => routeEvents([entry]),
    handleBatch: routeEvents,
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

  type Patch = Parameters<SqliteStorage["events"]["updateDeliveryTx"]>[2];
  type Audit = { action: string; decision?: string; details?: Record<string, unknown> };
  const auditTx = (tx: Tx, d: DeliveryRow, a: Audit, actor = "dispatcher") =>
    storage.audit.appendTx(tx, {
      actor,
      tenant: d.tenant,
      action: a.action,
      target: `${d.tenant}/endpoints/${d.endpoint}`,
      decision: a.decision ?? null,
      details: { delivery: d.id, event: d.eventId, ...a.details },
    });

  /**
   * A checkpoint, in one commit: whatever `more` writes, the delivery as `d` with `patch` applied
   * (the patch may depend on what `more` returned), the spans gathered since the last checkpoint,
   * and an audit entry. Resolves with the row as it now is and what `more` returned.
   */
  const settle = <T = undefined>(
    d: DeliveryRow,
    trace: TaskTrace,
    patch: Patch | ((r: T | undefined) => Patch),
    audit?: Audit,
    more?: (tx: Tx) => T,
  ): Promise<{ row: DeliveryRow; result: T | undefined }> =>
    storage.committer.run((tx) => {
      const result = more?.(tx);
      const row: DeliveryRow = { ...d, ...(typeof patch === "function" ? patch(result) : patch), updatedAt: tx.now };
      storage.events.checkpointTx(tx, row, trace.take());
      if (audit) auditTx(tx, d, audit);
      if (row.state !== d.state) announce(tx, row);
      return { row, result };
    });

  /**
   * A delivery's move to a state others may want to follow (the console, metrics, a later
   * integration) is an outbox entry `delivery.<state>`, in the commit of the move itself.
   */
  const announce = (tx: Tx, d: DeliveryRow) => {
    if (d.state === "pending" || d.state === "delivering") return;
    tx.emit({
      topic: `delivery.${d.state}`,
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
  };

  /**
   * One run of a delivery's job. The endpoint's capacity and circuit come first (in memory: a
   * busy or open endpoint gives the worker back before anything is written); then policy, once;
   * then one commit that holds the decision, the move to `delivering` and the attempt's audit
   * entry; the signed POST; and one commit that records the attempt, the outcome and the job's ack.
   */
  const run: JobHandler = async (job) => {
    const id = (job.payload as { id?: string }).id;
    const d = id ? storage.events.delivery(id) : null;
    if (!d) throw new PermanentJobError(`delivery ${id} not found`);
    if (TERMINAL.has(d.state)) return;
    const stored = await storage.events.get(d.eventId);
    if (!stored) throw new PermanentJobError(`event ${d.eventId} not found`);
    const trace = new TaskTrace(now);
    const endpoint = await endpointOf(d.tenant, d.endpoint);
    if (!endpoint) {
      await settle(
        d,
        trace,
        { state: "dead", lastError: `endpoint ${d.endpoint} no longer exists` },
        { action: "delivery.dead", details: { reason: "endpoint gone" } },
      );
      return;
    }
    // A parked delivery waits for its decision without taking a slot.
    if (d.state === "awaiting_approval") {
      const approval = d.approvalId ? await storage.approvals.get(d.approvalId) : null;
      if (!approval || approval.state === "pending") return;
    }

    const slot = await waitSlot(d, endpoint, BUSY_WAIT_MS);
    // A busy endpoint gives its worker back: the job comes again shortly, other endpoints go on.
    if (slot === "busy") {
      // Runs of this job that found no place: 250 ms twice, then twice as long each time up to
      // 2 s, jittered, so a long backlog at a slow endpoint does not churn the queue four times a
      // second per delivery.
      const bounces = Math.max(0, job.attempt - 1 - d.attempts);
      const wait = Math.min(BUSY_RETRY_MAX_MS, BUSY_RETRY_MS * 2 ** Math.min(3, Math.max(0, bounces - 1)));
      throw new RetryLaterError(
        `endpoint ${d.endpoint}: ${BUSY}`,
        Math.round(wait / 2 + (Math.random() * wait) / 2),
        true,
      );
    }
    if (slot === "open")
      throw new RetryLaterError(
        `endpoint ${d.endpoint}: ${CIRCUIT_OPEN}`,
        Math.max(1000, (breakers.for(key(d), endpoint.url).view().retryAt ?? now()) - now()),
        true,
      );
    let outcome: Outcome = null;
    try {
      outcome = await decideAndAttempt(job, d, endpoint, stored.envelope, trace);
      if (outcome?.thenThrow) throw outcome.thenThrow;
      return outcome?.acked ? "acked" : undefined;
    } finally {
      slot.release(outcome);
    }
  };

  const key = (d: { tenant: string; endpoint: string }) => `${d.tenant}/${d.endpoint}`;
  type Slot = { release(outcome: Outcome): void };

  /** A held place among `k`'s deliveries in flight; `release` reports the attempt's outcome to the circuit (no attempt, e.g. a policy that said no: the probe slot is simply free again). */
  const slotOf = (k: string, breaker: ReturnType<typeof breakers.for>): Slot => ({
    release(outcome: Outcome) {
      if (outcome?.ok) breaker.success();
      else if (outcome && outcome.errorClass !== "egress") breaker.failure();
      else breaker.release();
      handOff(k);
    },
  });

  /** A freed place goes to the delivery that waited longest for it (it keeps the in-flight count), else it is free. */
  const handOff = (k: string) => {
    const queue = waiting.get(k);
    const next = queue?.shift();
    if (queue && queue.length === 0) waiting.delete(k);
    if (next) return next();
    const left = (inFlight.get(k) ?? 1) - 1;
    if (left > 0) inFlight.set(k, left);
    else inFlight.delete(k);
  };

  /**
   * A place among the endpoint's deliveries in flight, and its circuit's permission: "busy" or
   * "open" when there is none. Deliveries waiting for a place (`waitSlot`) come first: while any
   * wait, a newcomer (the routing fast path) is busy.
   */
  const takeSlot = (
    d: DeliveryRow | { tenant: string; endpoint: string },
    endpoint: EndpointSpec,
  ): Slot | "busy" | "open" => {
    const k = key(d);
    const busy = inFlight.get(k) ?? 0;
    if (busy >= (endpoint.max_in_flight ?? DEFAULT_MAX_IN_FLIGHT) || waiting.has(k)) return "busy";
    const breaker = breakers.for(k, endpoint.url);
    if (!breaker.tryAcquire()) return "open";
    inFlight.set(k, busy + 1);
    return slotOf(k, breaker);
  };

  /**
   * A job's place at its endpoint: at once when one is free, else in line for up to `ms`, each
   * taking over the place the next finished attempt frees. A line holds twice the endpoint's
   * max_in_flight, or half the job workers when that is more: a burst to one endpoint keeps it as
   * busy as it allows, while the workers beyond its line are given back at once ("busy", retried
   * shortly) and half of them always serve other endpoints.
   */
  const waitSlot = async (d: DeliveryRow, endpoint: EndpointSpec, ms: number): Promise<Slot | "busy" | "open"> => {
    const free = takeSlot(d, endpoint);
    if (free !== "busy") return free;
    const k = key(d);
    const queue = waiting.get(k) ?? [];
    if (
      queue.length >=
      Math.max(2 * (endpoint.max_in_flight ?? DEFAULT_MAX_IN_FLIGHT), Math.floor((deps.workers ?? 0) / 2))
    )
      return "busy";
    const handed = await new Promise<boolean>((resolve) => {
      const take = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        const q = waiting.get(k);
        const i = q?.indexOf(take) ?? -1;
        if (i >= 0) q!.splice(i, 1);
        if (q && q.length === 0) waiting.delete(k);
        resolve(false);
      }, ms);
      queue.push(take);
      waiting.set(k, queue);
    });
    if (!handed) return "busy";
    // The place is ours (its in-flight count was handed over); the circuit still has its say.
    const breaker = breakers.for(k, endpoint.url);
    if (!breaker.tryAcquire()) {
      handOff(k);
      return "open";
    }
    return slotOf(k, breaker);
  };

  /** The policy decision for one delivery, as recorded on it, with its policy.eval span. */
  const evaluate = async (d: { tenant: string; endpoint: string }, envelope: Envelope, trace: TaskTrace) => {
    const t = trace.begin();
    const decision = decide(await tenantPolicies.get(d.tenant), envelope, { kind: "dispatch", target: d.endpoint });
    const record = {
      effect: decision.effect,
      policy: decision.policy && {
        name: decision.policy.name,
        version: decision.policy.version,
        global: decision.policy.tenant === "*",
      },
      rule: decision.rule,
      ...(decision.ruleName ? { rule_name: decision.ruleName } : {}),
      reason: decision.reason,
    };
    // Rules are numbered from 1 for people (#1 is the first in `rules`); `rule` keeps the index.
    const rule =
      record.rule !== null ? `, rule #${record.rule + 1}${decision.ruleName ? ` ${decision.ruleName}` : ""}` : "";
    trace.end(
      t,
      "policy.eval",
      "ok",
      record.policy
        ? `${decision.effect} (${record.policy.global ? "global " : ""}policy ${record.policy.name} v${record.policy.version}${rule})`
        : `${decision.effect} (no policy matched)`,
    );
    return { decision, record };
  };

  type Outcome = { ok: boolean; errorClass: string | null; acked: boolean; thenThrow?: Error } | null;

  const decideAndAttempt = async (
    job: Job,
    d: DeliveryRow,
    endpoint: EndpointSpec,
    envelope: Envelope,
    trace: TaskTrace,
  ): Promise<Outcome> => {
    const patch: Patch = {};
    // 1. Policy, once: the decision is part of the checkpoint.
    if (d.state === "pending") {
      const { decision, record } = await evaluate(d, envelope, trace);
      if (decision.effect === "deny" || decision.effect === "quarantine") {
        await settle(
          d,
          trace,
          { state: decision.effect === "deny" ? "denied" : "quarantined", decision: record },
          {
            action: `delivery.${decision.effect}`,
            decision: decision.effect,
            details: { policy: record.policy, rule: record.rule },
          },
        );
        return null;
      }
      if (decision.effect === "require_approval") {
        // The approval and the parked state in one commit: a crash cannot park it twice.
        await settle<ApprovalRow>(
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
        return null;
      }
      Object.assign(patch, { state: "delivering", decision: record });
    }

    // 2. A parked delivery goes on only with a decision that lets it.
    if (d.state === "awaiting_approval") {
      const approval = (await storage.approvals.get(d.approvalId!))!;
      const approved =
        approval.state === "approved" || (approval.state === "expired" && approval.onExpiry === "approve");
      trace.push(
        "approval.wait",
        approval.createdAt,
        (approval.decidedAt ?? now()) - approval.createdAt,
        approved ? "ok" : "error",
        `${approval.state}${approval.decidedBy ? ` by ${approval.decidedBy}` : ""}`,
      );
      if (!approved) {
        await settle(
          d,
          trace,
          { state: "denied" },
          { action: "delivery.deny", decision: "deny", details: { approval: approval.id } },
        );
        return null;
      }
      patch.state = "delivering";
    }

    // 3. Max age, counted from the first attempt (or the latest operator retry).
    const maxAge = endpoint.retry?.max_age ? parseDuration(endpoint.retry.max_age) : null;
    if (maxAge !== null && d.firstAttemptAt !== null && now() - d.firstAttemptAt > maxAge) {
      await settle(
        d,
        trace,
        { ...patch, state: "dead", lastError: `gave up after ${endpoint.retry!.max_age}` },
        { action: "delivery.dead", details: { reason: "max_age", attempts: d.attempts } },
      );
      return null;
    }

    // 4. The attempt's audit entry, committed with the checkpoint, before anything leaves.
    const attempt = d.attempts + 1;
    const t = trace.begin();
    d = (await settle(d, trace, patch, attemptAudit(d, endpoint, attempt))).row;
    trace.end(
      t,
      "audit.log",
      "ok",
      `delivery.attempt ${attempt}${patch.state ? `, with the checkpoint ${patch.state}` : ""}`,
    );
    return attemptNow(job, d, endpoint, envelope, trace, attempt);
  };

  const attemptAudit = (d: DeliveryRow, endpoint: EndpointSpec, attempt: number): Audit => ({
    action: "delivery.attempt",
    details: { attempt, url: endpoint.url, ...(d.replayOf ? { replay_of: d.replayOf } : {}) },
  });

  /** The attempt whose audit entry is committed: the signed POST, then the attempt, the outcome and (when nothing is left to do) the job's ack in one commit. */
  const attemptNow = async (
    job: Job,
    d: DeliveryRow,
    endpoint: EndpointSpec,
    envelope: Envelope,
    trace: TaskTrace,
    attempt: number,
  ): Promise<NonNullable<Outcome>> => {
    const body = JSON.stringify(envelope);
    let secret: string | undefined;
    if (endpoint.signing_secret) {
      const t2 = trace.begin();
      [secret] = await secrets.values(endpoint.signing_secret, d.tenant, `dispatch:${d.tenant}/${d.endpoint}`);
      trace.end(t2, "secrets.lease", "ok", endpoint.signing_secret);
    }
    const startedAt = now();
    const headers: Record<string, string> = secret
      ? signStandardWebhook(secret, d.id, Math.floor(startedAt / 1000), body)
      : { "webhook-id": d.id, "webhook-timestamp": String(Math.floor(startedAt / 1000)) };
    // A replay is a new delivery (its own webhook-id) that says which one it repeats: never a silent duplicate.
    if (d.replayOf) headers["agentowl-replay-of"] = d.replayOf;
    const timeout = endpoint.timeout ? (parseDuration(endpoint.timeout) ?? DEFAULT_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;

    const result = await postJson(endpoint.url, body, headers, {
      allowPublic: endpoint.allow_public === true,
      connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, timeout),
      timeoutMs: timeout,
      now,
      agent: agentFor(d, endpoint),
    });
    const lastError = result.ok ? null : (result.error ?? `HTTP ${result.status}`);
    trace.push(
      "delivery",
      startedAt,
      result.latencyMs,
      result.ok ? "ok" : "error",
      `attempt ${attempt}: ${result.status ? `HTTP ${result.status}` : (result.errorClass ?? "error")}${result.ok ? "" : ` ${lastError}`}`,
    );
    const maxAttempts = endpoint.retry?.max_attempts ?? DEFAULT_MAX_ATTEMPTS;
    const dead = !result.ok && (attempt - d.attemptBase >= maxAttempts || result.errorClass === "egress");
    const state = result.ok ? "delivered" : dead ? "dead" : "retrying";
    const t3 = trace.begin();
    const { result: acked } = await settle(
      d,
      trace,
      { state, attempts: attempt, lastStatus: result.status, lastError, firstAttemptAt: d.firstAttemptAt ?? startedAt },
      dead ? { action: "delivery.dead", details: { attempts: attempt, last_error: lastError } } : undefined,
      (tx) => {
        storage.events.insertAttemptTx(tx, {
          deliveryId: d.id,
          attempt,
          startedAt,
          latencyMs: Math.round(result.latencyMs),
          status: result.status,
          errorClass: result.errorClass ?? (result.ok ? null : "http"),
          error: lastError,
          excerpt: result.excerpt.slice(0, 1024),
        });
        return result.ok || dead ? tx.ack(job) : false;
      },
    );
    trace.end(t3, "state.store", "ok", `${state}, attempt ${attempt} recorded`);
    trailingSpans(d.id, trace);
    // Retry: when the endpoint said, else the queue's exponential backoff with jitter.
    const thenThrow =
      result.ok || dead
        ? undefined
        : result.retryAfterMs !== null
          ? new RetryLaterError(`HTTP ${result.status}`, Math.max(1000, result.retryAfterMs))
          : new Error(lastError ?? "delivery failed");
    return { ok: result.ok, errorClass: result.errorClass, acked: acked === true, thenThrow };
  };

  /**
   * The spans of a run's last commit (its own `state.store`) cannot be written by that commit:
   * they ride along with whatever commits next, without anyone waiting for them.
   */
  const trailingSpans = (id: string, trace: TaskTrace) => {
    const spans = trace.take();
    if (!spans.length) return;
    storage.committer
      .run((tx) => storage.events.appendSpansTx(tx, id, spans))
      .catch(() => {
        // A trace is diagnostics: the delivery's state is already committed.
      });
  };

  // ---- operator actions (docs/state-machines.md: deliveries can be retried, discarded, and replayed) ----------

  /**
   * Replay an event: to every target its routes give now (an event that was unrouted gets its
   * routes), or to one endpoint. Each is a new delivery, decided by policy again, with its own
   * webhook-id and a link to the delivery it repeats. One commit: the deliveries, their jobs and
   * the audit entry.
   */
  const replay = async (eventId: string, opts: { endpoint?: string; actor: string }): Promise<DeliveryRow[]> => {
    const stored = await storage.events.get(eventId);
    if (!stored) throw new AppError("not_found", "not found");
    let targets: { endpoint: string; route: string | null }[];
    if (opts.endpoint) {
      if (!(await endpointOf(stored.tenant, opts.endpoint)))
        throw new AppError("not_found", `endpoint ${stored.tenant}/${opts.endpoint} not found`);
      targets = [{ endpoint: opts.endpoint, route: null }];
    } else {
      targets = (await routes.route(stored.envelope)).targets;
      if (!targets.length)
        throw new AppError(
          "conflict",
          `no route of tenant ${stored.tenant} matches event ${eventId}: add a route, or replay it to one endpoint`,
        );
    }
    const ids = await storage.committer.run((tx) => {
      const made: string[] = [];
      for (const t of targets) {
        const previous = storage.events.latestDelivery(eventId, t.endpoint);
        const row = {
          id: newId("dlv", tx.now),
          eventId,
          tenant: stored.tenant,
          endpoint: t.endpoint,
          route: t.route,
          state: "pending" as const,
          createdAt: tx.now,
          updatedAt: tx.now,
          replayOf: previous?.id ?? null,
          requestedBy: opts.actor,
        };
        if (!storage.events.insertDeliveryTx(tx, row)) continue;
        enqueue(tx, row, `delivery:${row.id}`);
        made.push(row.id);
      }
      storage.audit.appendTx(tx, {
        actor: opts.actor,
        tenant: stored.tenant,
        action: "event.replay",
        target: eventId,
        details: { deliveries: made, endpoint: opts.endpoint ?? null },
      });
      return made;
    });
    return ids.map((x) => storage.events.delivery(x)!);
  };

  /** A dead delivery tries again under the same webhook-id, with a fresh max_attempts / max_age budget. */
  const retry = (d: DeliveryRow, actor: string): Promise<DeliveryRow> =>
    storage.committer.run((tx) => {
      const retried = storage.events.transitionTx(tx, d.id, ["dead"], {
        state: "delivering",
        attemptBase: d.attempts,
        firstAttemptAt: null,
        requestedBy: actor,
        lastError: null,
      });
      if (!retried)
        throw new AppError(
          "conflict",
          `delivery ${d.id} is ${storage.events.delivery(d.id)?.state}: only a dead delivery can be retried (replay its event for a new one)`,
        );
      tx.emit({
        topic: "delivery.retried",
        tenant: d.tenant,
        payload: { id: d.id, event: d.eventId, endpoint: d.endpoint, requested_by: actor },
      });
      enqueue(tx, d, `delivery:${d.id}:retry:${d.attempts}`);
      auditTx(tx, d, { action: "delivery.retry", details: { attempts_so_far: d.attempts } }, actor);
      return retried;
    });

  /** A dead delivery, or one still retrying, is given up on: it stays on record, it is never tried again. */
  const discard = (d: DeliveryRow, actor: string): Promise<DeliveryRow> =>
    storage.committer.run((tx) => {
      const discarded = storage.events.transitionTx(tx, d.id, ["dead", "retrying"], {
        state: "discarded",
        requestedBy: actor,
      });
      if (!discarded)
        throw new AppError(
          "conflict",
          `delivery ${d.id} is ${storage.events.delivery(d.id)?.state}: only a dead or retrying delivery can be discarded`,
        );
      announce(tx, discarded);
      auditTx(tx, d, { action: "delivery.discard", details: { attempts: d.attempts, last_error: d.lastError } }, actor);
      return discarded;
    });

  /**
   * An endpoint's waits are over: its circuit starts closed, and every delivery to it whose job
   * waits for a later time (a backoff, the circuit's cooldown, a busy endpoint) runs now. For an
   * operator's reset, and when the endpoint's URL changed (a wrong URL fixed).
   */
  const unblock = async (tenant: string, name: string): Promise<{ wasOpen: boolean; woken: number }> => {
    const wasOpen = breakers.reset(`${tenant}/${name}`);
    const prefixes: string[] = [];
    for (const state of WAITING_STATES) {
      for (let before: string | undefined; ; ) {
        const page = await storage.events.deliveries({ tenants: [tenant], endpoint: name, state, before, limit: 1000 });
        prefixes.push(...page.map((d) => `delivery:${d.id}`));
        if (page.length < 1000) break;
        before = page.at(-1)!.id;
      }
    }
    return { wasOpen, woken: await storage.queue.runNow(DELIVERY_JOB, prefixes) };
  };

  /** `agentowl endpoints reset-circuit`: audited first, then the circuit closed and the waiting deliveries sent. */
  const resetCircuit = async (tenant: string, name: string, actor: string) => {
    const circuit = breakers.peek(`${tenant}/${name}`);
    await storage.committer.run((tx) =>
      storage.audit.appendTx(tx, {
        actor,
        tenant,
        action: "endpoint.reset_circuit",
        target: `${tenant}/endpoints/${name}`,
        decision: null,
        details: { state: circuit.state, consecutive_failures: circuit.consecutiveFailures },
      }),
    );
    return unblock(tenant, name);
  };

  /** An endpoint's URL changed (src/control/service.ts): what it waited for no longer holds. */
  const endpointChanges: Subscriber = {
    name: "dispatch-endpoints",
    topics: [ENDPOINT_URL_CHANGED],
    async handle(entry) {
      const name = (entry.payload as { name?: string })?.name;
      if (entry.tenant && name) await unblock(entry.tenant, name);
    },
  };

  /** What a delivery that is not finished waits for; null when it is finished. */
  const waitingFor = async (d: DeliveryRow): Promise<Waiting | null> => {
    if (TERMINAL.has(d.state)) return null;
    if (d.state === "awaiting_approval") {
      const approval = d.approvalId ? await storage.approvals.get(d.approvalId) : null;
      return { reason: "approval", approval_id: d.approvalId, until: approval?.expiresAt ?? null };
    }
    const job = await storage.queue.unfinished(DELIVERY_JOB, `delivery:${d.id}`);
    if (!job) return null;
    if (job.state === "leased") return { reason: "attempt_in_progress", until: null };
    if (job.lastError?.endsWith(CIRCUIT_OPEN)) {
      const circuit = breakers.peek(`${d.tenant}/${d.endpoint}`);
      if (circuit.state !== "closed") return { reason: "circuit_open", until: circuit.retryAt };
    }
    if (job.runAt <= now()) return { reason: "worker", until: null };
    if (job.lastError?.endsWith(BUSY)) return { reason: "endpoint_busy", until: job.runAt };
    return { reason: "retry", until: job.runAt, last_error: d.lastError };
  };

  /** What the API shows of an endpoint's health: its circuit, deliveries in flight and by state. */
  const endpointStatus = (tenant: string, name: string) => {
    const key = `${tenant}/${name}`;
    const circuit = breakers.peek(key);
    return { circuit, in_flight: inFlight.get(key) ?? 0, deliveries: storage.events.deliveryCounts(tenant, name) };
  };

  /** Wait up to `ms` for fast-path attempts in flight; false when some were cut off (their jobs keep their leases). */
  const drain = async (ms: number): Promise<boolean> => {
    if (!fast.size) return true;
    return Promise.race([Promise.allSettled([...fast]).then(() => true), Bun.sleep(ms).then(() => false)]);
  };

  /** Close the kept-alive connections (at shutdown). */
  const close = () => {
    for (const a of agents.values()) a.destroy();
    agents.clear();
  };

  return {
    router,
    inline,
    approvals,
    endpointChanges,
    run,
    replay,
    retry,
    discard,
    resetCircuit,
    waitingFor,
    endpointStatus,
    breakers,
    drain,
    close,
    inFlight: (key: string) => inFlight.get(key) ?? 0,
  };
}
