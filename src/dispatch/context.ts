import { type Clock, type Random, systemClock } from "../core/clock.ts";
import { ConfigCache, SpecCache } from "../control/resources/cache.ts";
import type { EndpointSpec } from "../control/resources/specs.ts";
import { type CompiledPolicy, PolicyCache } from "../policy/engine.ts";
import { policiesFor } from "../policy/load.ts";
import { RouteTable } from "../route/route.ts";
import type { Envelope } from "../events/envelope.ts";
import type { DeliveryRow, Storage, Tx } from "../store/index.ts";
import { LeasedSecrets } from "../vault/leased.ts";
import type { Vault } from "../vault/vault.ts";
import { Breakers } from "./breaker.ts";
import { Connections } from "./connections.ts";
import { DeliveryWriter } from "./delivery.ts";
import { EndpointSlots } from "./endpoint-slots.ts";
import { EndpointGate } from "./gate.ts";
import type { Attempt } from "./post.ts";
import type { TaskTrace } from "./trace.ts";

/**
 * What the parts of the dispatcher share (docs/architecture.md#dispatch): its dependencies, the
 * configuration caches, and the in-memory state of the endpoints (circuits, places in flight,
 * kept-alive connections). One object, made once by `dispatcher()` and handed to each part.
 */

export const DELIVERY_JOB = "delivery.run";
/** An endpoint's `max_in_flight` when its spec has none. */
export const DEFAULT_MAX_IN_FLIGHT = 4;
/** An attempt's total timeout when its endpoint's spec has none. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/**
 * The job may run more often than the delivery attempts (an open circuit, a parked approval):
 * the dispatcher decides when a delivery is dead, not the queue.
 */
const JOB_MAX_RUNS = 1_000_000_000;
const DEFAULT_VISIBILITY_MS = 5 * 60_000;

/** A route target that names a claimed agent (`agent:<name>`) instead of an endpoint. */
export const AGENT_TARGET = "agent:";

/** A task's timeout: the runtime may ask the model several times (each up to agents_model_timeout) before it answers. */
const AGENT_TASK_TIMEOUT = "10m";

/** The agent a target names, or null when it names an endpoint. */
export function agentOf(target: string): string | null {
  return target.startsWith(AGENT_TARGET) ? target.slice(AGENT_TARGET.length) : null;
}

/**
 * The agent pool as the dispatcher sees it (src/agents/): a delivery to `agent:<name>` is a
 * `task` request over the claimed runtime's socket instead of an HTTP POST, with the same
 * delivery rows, retries, policy and audit. The pool provides it; without it an agent target is
 * a target that does not exist.
 */
export interface AgentTargets {
  /** Whether `agent` is claimed in `tenant` (a runtime being relaunched is still claimed). */
  has(tenant: string, agent: string): boolean;
  /** Agents whose active email, webhook or sms tool receives this event: each is a target `agent:<name>`. */
  routesFor(envelope: Envelope): readonly string[];
  /**
   * The task, answered within `timeoutMs`, as an attempt: ok when the runtime answered `done`;
   * spans of what the runtime did meanwhile (agent.model, tool.call) go on `trace`. Never throws.
   */
  deliverToAgent(
    tenant: string,
    agent: string,
    delivery: DeliveryRow,
    envelope: Envelope,
    timeoutMs: number,
    trace: TaskTrace,
  ): Promise<Attempt>;
}

export interface DispatcherDeps {
  storage: Storage;
  vault: Vault;
  /** Who holds the fast path's job leases (as the job runner's owner), and for how long. */
  owner?: string;
  visibilityMs?: number;
  clock?: Clock;
  /** The jitter of a busy endpoint's retry. */
  random?: Random;
  breaker?: { threshold: number; cooldownMs: number };
  /** The job runner's concurrency: how many deliveries may wait in one endpoint's line. */
  workers?: number;
  /** The agent pool, when there is one (else `setAgentTargets` later: the pool starts after the dispatcher). */
  targets?: AgentTargets;
}

export interface DispatchContext {
  readonly storage: Storage;
  readonly clock: Clock;
  readonly random: Random;
  /** The fast path's job leases: their owner and visibility timeout. */
  readonly lease: { owner: string | null; visibilityMs: number };
  /**
   * The fast path's attempts go without a job (src/dispatch/fast-path.ts): on SQLite, where one
   * process holds the data dir, the `delivering` row says all a crash leaves to recover. On a
   * shared database the leased job says which node works on it.
   */
  readonly jobless: boolean;
  readonly routes: RouteTable;
  readonly secrets: LeasedSecrets;
  readonly breakers: Breakers;
  readonly slots: EndpointSlots;
  readonly gate: EndpointGate;
  readonly connections: Connections;
  /** The one writer of delivery state. */
  readonly deliveries: DeliveryWriter;
  /** The agent pool's side of `agent:<name>` targets, null until the pool is there. */
  targets: AgentTargets | null;
  /** An endpoint's spec as configured now, undefined when it does not exist (an agent target: its stand-in spec while it is claimed). */
  endpoint(tenant: string, name: string): Promise<EndpointSpec | undefined>;
  /** The policies that decide for a tenant's deliveries, in the engine's order. */
  policies(tenant: string): Promise<CompiledPolicy[]>;
  /** A job to run delivery `d`, unique by `key`. */
  enqueueTx(tx: Tx, d: { id: string; tenant: string }, key: string): void;
}

export function dispatchContext(deps: DispatcherDeps): DispatchContext {
  const { storage } = deps;
  const clock = deps.clock ?? systemClock;
  const breakers = new Breakers({
    threshold: deps.breaker?.threshold ?? 5,
    cooldownMs: deps.breaker?.cooldownMs ?? 30_000,
    clock,
  });
  // Several nodes: a place is held in the database as well, for as long as a job lease lasts (a
  // node that died holding it is presumed gone then, as its jobs are).
  const holder = `${deps.owner ?? "dispatch"}:${crypto.randomUUID()}`;
  const ttlMs = deps.visibilityMs ?? DEFAULT_VISIBILITY_MS;
  const sharedSlots = storage.slots;
  const slots = new EndpointSlots({
    clock,
    workers: deps.workers,
    shared: sharedSlots && {
      take: (key, limit) => sharedSlots.take(key, limit, holder, ttlMs),
      release: (key, slot) => sharedSlots.release(key, slot, holder),
    },
  });
  // The configuration every delivery reads, kept until it changes (src/control/resources/cache.ts).
  const endpoints = new SpecCache<EndpointSpec>(storage.resources, "endpoints");
  const compiled = new PolicyCache();
  const tenantPolicies = new ConfigCache(storage.resources, (tenant) =>
    policiesFor(storage.resources, compiled, tenant),
  );
  const ctx: DispatchContext = {
    storage,
    clock,
    random: deps.random ?? Math.random,
    lease: { owner: deps.owner ?? null, visibilityMs: deps.visibilityMs ?? DEFAULT_VISIBILITY_MS },
    jobless: !storage.shared,
    routes: new RouteTable(storage.resources),
    secrets: new LeasedSecrets(deps.vault, clock),
    breakers,
    slots,
    gate: new EndpointGate(slots, breakers, DEFAULT_MAX_IN_FLIGHT),
    connections: new Connections(DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT_MS),
    deliveries: new DeliveryWriter(storage),
    targets: deps.targets ?? null,
    endpoint: async (tenant, name) => {
      const agent = agentOf(name);
      if (agent === null) return (await endpoints.value(tenant, name)) ?? undefined;
      return ctx.targets?.has(tenant, agent) ? agentSpec(tenant, name) : undefined;
    },
    policies: (tenant) => tenantPolicies.get(tenant),
    enqueueTx: (tx, d, key) => {
      tx.enqueue(deliveryJob(d, key));
    },
  };
  return ctx;
}

/**
 * What an agent target stands on where an endpoint's spec is read: its name, a URL that says where
 * the task goes (in the attempt's audit entry and the circuit's key), the default retries and
 * timeout, one task at a time (a runtime works on one task at once).
 */
function agentSpec(tenant: string, name: string): EndpointSpec {
  return {
    name,
    url: `agent://${tenant}/${name.slice(AGENT_TARGET.length)}`,
    max_in_flight: 1,
    timeout: AGENT_TASK_TIMEOUT,
  };
}

/** The spec of the job that runs delivery `id` (the fast path creates it leased). */
export function deliveryJob(d: { id: string; tenant: string }, key: string) {
  return {
    kind: DELIVERY_JOB,
    payload: { id: d.id },
    tenant: d.tenant,
    idempotencyKey: key,
    maxAttempts: JOB_MAX_RUNS,
  };
}
