import { Elysia } from "elysia";
import { AgentsPage, type AgentsView, type RuntimeItem } from "../../web/index.ts";
import type { PoolStatus, RuntimeRecord } from "../agents/types.ts";
import { RUNTIME_STATES, type RuntimeState } from "../agents/types.ts";
import { isAdmin, visibleTenants } from "../api/auth.ts";
import { isId } from "../core/ids.ts";
import { type ConsoleKit, iso, PAGE, queryString } from "./kit.ts";

/** A runtime as the page shows it. */
export function runtimeItem(r: RuntimeRecord): RuntimeItem {
  return {
    id: r.id,
    state: `${r.state}${r.destroying ? " (destroying)" : ""}`,
    tenant: r.tenant,
    agent: r.agent,
    template: r.template === null ? null : `${r.template}@v${r.templateVersion ?? "?"}`,
    isolation: r.isolation,
    heartbeatAt: r.heartbeatAt === null ? null : iso(r.heartbeatAt),
    syncedAt: r.syncedAt === null ? null : iso(r.syncedAt),
    error: r.error,
  };
}

/** The pool's summary; its counts by state are the whole appliance's, so an admin's only. */
export function poolSummary(s: PoolStatus, admin: boolean): NonNullable<AgentsView["pool"]> {
  return {
    minIdle: s.minIdle,
    isolation:
      s.isolation === "process" && s.isolationReason ? `process (no sandbox: ${s.isolationReason})` : s.isolation,
    onEmpty: s.onEmpty === "429" ? "is refused (429, try again later)" : "starts a runtime (a cold claim)",
    byState: admin ? RUNTIME_STATES.map((st) => `${st} ${s.byState[st] ?? 0}`).join(", ") : null,
  };
}

/**
 * /console/agents (docs/console.md#agents, docs/agents.md): the pool's runtimes with their state,
 * tenant, agent, template version, isolation, last heartbeat and sync, as `agentowl agents ls`
 * shows them; an admin sees every runtime (the warm ones too), a member those its tenants claimed.
 */
export function agentsRoutes(kit: ConsoleKit) {
  const { signedIn, notFound, html, chromeFor } = kit;
  const pool = kit.deps.agents ?? null;

  return new Elysia({ name: "console-agents", normalize: false, detail: { hide: true } }).get(
    "/console/agents",
    signedIn(async (v, { request }) => {
      const q = new URL(request.url).searchParams;
      const after = q.get("after") ?? "";
      const state = q.get("state") ?? "";
      if (after && !isId(after, "rt")) return notFound(v);
      if (state && !(RUNTIME_STATES as readonly string[]).includes(state)) return notFound(v);
      const view: AgentsView = {
        pool: null,
        runtimes: [],
        state,
        states: RUNTIME_STATES,
        first: null,
        next: null,
        message: null,
      };
      if (pool) {
        const admin = isAdmin(v.principal);
        const visible = visibleTenants(v.principal);
        const [status, rows] = await Promise.all([
          pool.status(),
          // A member who belongs to no tenant sees no runtime (an empty list of tenants would mean "any").
          visible !== "all" && visible.length === 0
            ? Promise.resolve([])
            : pool.list({
                ...(visible === "all" ? {} : { tenants: visible }),
                ...(state ? { state: state as RuntimeState } : {}),
                ...(after ? { after } : {}),
                limit: PAGE + 1,
              }),
        ]);
        const shown = rows.slice(0, PAGE);
        view.pool = poolSummary(status, admin);
        view.runtimes = shown.map(runtimeItem);
        view.first = after ? `/console/agents${queryString({ state })}` : null;
        view.next = rows.length > PAGE ? `/console/agents${queryString({ state, after: shown.at(-1)!.id })}` : null;
      }
      return html(AgentsPage({ chrome: chromeFor(v, "agents"), view }));
    }),
  );
}
