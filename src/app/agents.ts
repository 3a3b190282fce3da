import { type AgentMetrics, agentMetrics } from "../agents/metrics.ts";
import { openChannel } from "../agents/channel.ts";
import { Pool, type PoolDeps } from "../agents/pool.ts";
import { reconcile } from "../agents/reconcile.ts";
import { detectIsolation, launchRuntime } from "../agents/sandbox/index.ts";
import { poolTick } from "../agents/tick.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Config } from "../config/index.ts";
import type { Storage } from "../store/index.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";

/**
 * What the pool is built from besides storage and settings: tool provisioning and the runtime's
 * requests; the launcher, isolation and channel default to src/agents/sandbox/ and channel.ts.
 */
export type AgentParts = Pick<PoolDeps, "tools" | "handler"> &
  Partial<Pick<PoolDeps, "launch" | "isolation" | "openChannel">>;

/**
 * The agent pool (docs/agents.md), opened after the dispatcher and the workers: reconciled with
 * what a previous run left (before any claim can arrive), then kept by its tick. On the stop stack:
 * the tick stops first, then every runtime process is killed (their rows stay for the next start).
 */
export async function openAgents(
  deps: { config: Config; log: Logger; clock: Clock; storage: Storage; metrics: Metrics; parts: AgentParts },
  stack: StopStack<Shutdown>,
): Promise<Pool> {
  const { config, clock, storage } = deps;
  const log = deps.log.child({ component: "agents" });
  const isolationInfo = deps.parts.isolation ?? detectIsolation();
  const launch = deps.parts.launch ?? ((spec) => launchRuntime(spec, { isolation: isolationInfo.isolation }));
  const metrics: AgentMetrics = agentMetrics(deps.metrics.registry, () => storage.agents.countByState());
  const pool = stack.add(
    "agents",
    new Pool({
      storage,
      dataDir: config.dataDir,
      settings: config.agents,
      openChannel,
      ...deps.parts,
      isolation: isolationInfo,
      launch,
      log,
      clock,
      metrics,
    }),
    (p) => p.close(),
  );
  const { isolation, reason } = isolationInfo;
  if (isolation === "process")
    log.warn("agent runtimes run as plain processes, without a sandbox", { isolation, reason: reason ?? undefined });
  else log.info("agent runtimes are sandboxed", { isolation });
  await reconcile(pool);
  await stack.start(poolTick(pool, { clock, log, everyMs: config.agents.tickMs }));
  // The first refill now, not a tick from now.
  void pool.refill();
  return pool;
}
