import type { Envelope } from "../events/envelope.ts";
import { type Action, compileGetter, compileTest } from "../policy/engine.ts";
import type { RouteSpec } from "../control/resources/specs.ts";
import { ConfigCache } from "../control/resources/cache.ts";
import type { ResourceStore } from "../store/index.ts";

/**
 * Routing (docs/desired-state.md#routes, docs/state-machines.md): which of a tenant's endpoints
 * an event goes to. Routes are tried lowest `priority` first (default 100), ties by name; every
 * route whose `match` holds adds its `to` endpoints (fan-out), each endpoint once, credited to the
 * first route that named it.
 * The tenant's `default: true` route applies only when no other route matched. An event nothing
 * matches is unrouted: recorded as such by the caller, never dropped.
 *
 * `match` keys are the policy engine's (envelope fields; anything else is under `data`), plus:
 * `agent` holds when any of the event's agents matches (a mail to hello@ and support@ routes by
 * either), `binding` is the binding that received it, `sender` who sent it (a mail's From
 * address, an SMS's or call's number).
 */

export interface RouteDecision {
  /** `endpoint` may name an agent (`agent:<name>`); `route` is null for a target no route named (an agent's tool). */
  targets: { endpoint: string; route: string | null }[];
  /** Routes whose match held, in order (the default route when it was used). */
  matched: string[];
  usedDefault: boolean;
  unrouted: boolean;
}

type Test = (e: Envelope) => boolean;
const NO_ACTION: Action = { kind: "dispatch", target: "" };

function agentsOf(e: Envelope): unknown[] {
  const agents = (e.data as { agents?: unknown }).agents;
  return Array.isArray(agents) ? agents : [e.agent];
}

function senderOf(e: Envelope): unknown {
  const from = (e.data as { from?: unknown }).from;
  if (from && typeof from === "object") return (from as { address?: unknown }).address ?? null;
  return from ?? null;
}

function compileRouteMatch(match: RouteSpec["match"]): Test {
  const tests: Test[] = Object.entries(match ?? {}).map(([key, condition]) => {
    const test = compileTest(condition);
    if (key === "agent") return (e) => agentsOf(e).some((a) => test(a));
    if (key === "binding") return (e) => test(e.source.binding);
    if (key === "sender") return (e) => test(senderOf(e));
    const get = compileGetter(key);
    return (e) => test(get(e, NO_ACTION));
  });
  return (e) => tests.every((t) => t(e));
}

export function compileRoutes(specs: readonly RouteSpec[]): (event: Envelope) => RouteDecision {
  const ordered = [...specs].sort(
    (a, b) => (a.priority ?? 100) - (b.priority ?? 100) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const normal = ordered.filter((r) => !r.default).map((r) => ({ spec: r, test: compileRouteMatch(r.match) }));
  const fallback = ordered.find((r) => r.default) ?? null;
  return (event) => {
    const targets: RouteDecision["targets"] = [];
    const seen = new Set<string>();
    const matched: string[] = [];
    const add = (r: RouteSpec) => {
      matched.push(r.name);
      for (const endpoint of r.to) {
        if (seen.has(endpoint)) continue;
        seen.add(endpoint);
        targets.push({ endpoint, route: r.name });
      }
    };
    for (const r of normal) if (r.test(event)) add(r.spec);
    const usedDefault = matched.length === 0 && fallback !== null;
    if (usedDefault) add(fallback!);
    return { targets, matched, usedDefault, unrouted: targets.length === 0 };
  };
}

/** A tenant's compiled routes, compiled again only after the configuration changed. */
export class RouteTable {
  private readonly compiled: ConfigCache<(event: Envelope) => RouteDecision>;

  constructor(resources: ResourceStore) {
    this.compiled = new ConfigCache(resources, async (tenant) =>
      compileRoutes((await resources.list({ tenant, kind: "routes", limit: 100_000 })).map((r) => r.spec as RouteSpec)),
    );
  }

  async route(event: Envelope): Promise<RouteDecision> {
    return (await this.compiled.value(event.tenant))(event);
  }
}
