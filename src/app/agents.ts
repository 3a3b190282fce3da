import { type AgentMetrics, agentMetrics } from "../agents/metrics.ts";
import { openChannel } from "../agents/channel.ts";
import { nodeName, Pool, type PoolDeps } from "../agents/pool.ts";
import { reconcile } from "../agents/reconcile.ts";
import { detectIsolationAsync, type IsolationInfo, launchRuntime } from "../agents/sandbox/index.ts";
import { AgentServices } from "../agents/services.ts";
import { poolTick } from "../agents/tick.ts";
import { parseDuration } from "../config/index.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Config } from "../config/index.ts";
import type { Storage } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import type { Dispatch } from "./workers.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";

/**
 * What the pool is built from besides storage and settings: tool provisioning and the runtime's
 * requests; the launcher, isolation and channel default to src/agents/sandbox/ and channel.ts.
 */
export type AgentParts = Pick<PoolDeps, "tools" | "handler"> &
  Partial<Pick<PoolDeps, "launch" | "isolation" | "openChannel">>;

/**
 * The agents' services (tool plugins, tool calls, the model proxy, the directory of inbound
 * tools), made before the workers start: the outbox relay takes their approvals subscriber, and
 * the dispatcher delivers `agent:<name>` targets through them once the pool is open.
 */
export function agentServices(deps: {
  config: Config;
  log: Logger;
  clock: Clock;
  storage: Storage;
  vault: Vault;
  metrics: Metrics;
  dispatch: Dispatch;
}): AgentServices {
  const { config, storage, dispatch } = deps;
  const services = new AgentServices({
    storage,
    vault: deps.vault,
    log: deps.log.child({ component: "agents" }),
    clock: deps.clock,
    mailDomain: config.mailDomain,
    smarthost: config.settings.agents_smarthost ?? null,
    modelTimeoutMs: parseDuration(config.settings.agents_model_timeout) ?? 120_000,
    endpoint: (tenant, name) => dispatch.endpoint(tenant, name),
    policies: (tenant) => dispatch.policies(tenant),
    metrics: agentMetrics(deps.metrics.registry, () => storage.agents.countByState()),
  });
  dispatch.setAgentTargets(services.targets);
  return services;
}

/**
 * How runtimes will be isolated: the bwrap probe starts a process, so start-up begins it first and
 * lets it run beside the steps before the pool opens.
 */
export function probeIsolation(parts?: Partial<AgentParts>): Promise<IsolationInfo> {
  return parts?.isolation ? Promise.resolve(parts.isolation) : detectIsolationAsync();
}

/**
 * The agent pool (docs/agents.md), opened after the dispatcher and the workers: reconciled with
 * what a previous run left (before any claim can arrive), then kept by its tick. On the stop stack:
 * the tick stops first, then every runtime process is killed (their rows stay for the next start).
 */
export async function openAgents(
  deps: {
    config: Config;
    log: Logger;
    clock: Clock;
    storage: Storage;
    metrics: Metrics;
    services: AgentServices;
    parts?: Partial<AgentParts>;
    /** From probeIsolation, started earlier. */
    isolation: Promise<IsolationInfo>;
  },
  stack: StopStack<Shutdown>,
): Promise<Pool> {
  const { config, clock, storage } = deps;
  const log = deps.log.child({ component: "agents" });
  const { services } = deps;
  const parts: AgentParts = { tools: services, handler: (id) => services.handler(id), ...deps.parts };
  const isolationInfo = await deps.isolation;
  const launch = parts.launch ?? ((spec) => launchRuntime(spec, { isolation: isolationInfo.isolation }));
  const metrics: AgentMetrics = agentMetrics(deps.metrics.registry, () => storage.agents.countByState());
  const pool = stack.add(
    "agents",
    new Pool({
      storage,
      dataDir: config.dataDir,
      settings: config.agents,
      openChannel,
      ...parts,
      isolation: isolationInfo,
      launch,
      log,
      clock,
      metrics,
      // Several nodes on one database: each runs, claims and checks only its own runtimes.
      node: storage.shared ? nodeName(config.dataDir) : null,
    }),
    (p) => p.close(),
  );
  const { isolation, reason } = isolationInfo;
  if (isolation === "process")
    log.warn("agent runtimes run as plain processes, without a sandbox", { isolation, reason: reason ?? undefined });
  else log.info("agent runtimes are sandboxed", { isolation });
  await reconcile(pool);
  await services.attach(pool);
  await stack.start(poolTick(pool, { clock, log, everyMs: config.agents.tickMs }));
  // The first refill now, not a tick from now.
  void pool.refill();
  return pool;
}
