import { Counter, Gauge, Histogram, type Registry } from "../core/prom.ts";
import type { RuntimeState } from "./types.ts";

/** The agent pool's metrics (docs/agents.md), registered once per registry. */
export interface AgentMetrics {
  claims: Counter<"kind">;
  claimSeconds: Histogram<string>;
  stuck: Counter<string>;
  replaced: Counter<string>;
  toolCalls: Counter<"decision">;
}

const made = new WeakMap<Registry, AgentMetrics>();

/**
 * The pool's counters on `registry`; `byState` is read on every scrape for
 * agentowl_agents_runtimes{state} (the first caller's reader is the one kept).
 */
export function agentMetrics(registry: Registry, byState?: () => Promise<Record<RuntimeState, number>>): AgentMetrics {
  const had = made.get(registry);
  if (had) return had;
  const registers = [registry];
  if (byState)
    new Gauge({
      name: "agentowl_agents_runtimes",
      help: "Agent runtimes by state (deleted ones are the pool's history).",
      labelNames: ["state"] as const,
      registers,
      async collect() {
        for (const [state, n] of Object.entries(await byState())) this.set({ state }, n);
      },
    });
  const m: AgentMetrics = {
    claims: new Counter({
      name: "agentowl_agents_claims_total",
      help: "Claims of an agent runtime: warm (a ready one was taken) or cold (one was started for it).",
      labelNames: ["kind"] as const,
      registers,
    }),
    claimSeconds: new Histogram({
      name: "agentowl_agents_claim_seconds",
      help: "Time from a claim's request to its configured runtime, tools provisioned.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    stuck: new Counter({
      name: "agentowl_agents_stuck_total",
      help: "Runtimes found stuck: their process exited or they missed heartbeats for agents_stuck_timeout.",
      registers,
    }),
    replaced: new Counter({
      name: "agentowl_agents_replaced_total",
      help: "Stuck runtimes destroyed by the tick (the refill starts their replacements).",
      registers,
    }),
    toolCalls: new Counter({
      name: "agentowl_agents_tool_calls_total",
      help: "Tool calls of runtimes, by decision: refused, allow, deny, require_approval.",
      labelNames: ["decision"] as const,
      registers,
    }),
  };
  made.set(registry, m);
  return m;
}
