import { Type } from "@sinclair/typebox";
import { Elysia } from "elysia";
import type {
  AgentPool,
  ClaimResult,
  PoolStatus,
  RuntimeRecord,
  RuntimeState,
  ToolPlugin,
  ToolRecord,
} from "../agents/types.ts";
import { RUNTIME_STATES } from "../agents/types.ts";
import { NAME_PATTERN, TOOL_ID_PATTERN } from "../control/resources/specs.ts";
import type { Clock } from "../core/clock.ts";
import { isId } from "../core/ids.ts";
import { AppError } from "../errors/index.ts";
import type { ResourceStore, TokenStore } from "../store/index.ts";
import { canAccess, isAdmin, type Principal, tenantsFor } from "./auth.ts";
import { authenticated, pageOf, readPage } from "./http.ts";

/** What `GET /v1/tools` shows of a plugin: a registered ToolPlugin is one. */
export type ToolListing = Pick<ToolPlugin, "id" | "description" | "provisioning" | "parameters"> & {
  /** JSON Schema of the template's `config` for a tool of this plugin, when the plugin declares one. */
  readonly configSchema?: Record<string, unknown>;
};

export interface AgentRoutesDeps {
  pool: AgentPool;
  /** The registered tool plugins (src/agents/tools). */
  tools: () => readonly ToolListing[];
  resources: Pick<ResourceStore, "get">;
  tokens: TokenStore;
  clock: Clock;
}

/** The highest `min_idle` the API takes: each warm runtime is a process with its own memory. */
export const MAX_MIN_IDLE = 1000;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A runtime as the API shows it: never its token's hash, nor its paths on disk. */
export function presentRuntime(r: RuntimeRecord) {
  return {
    id: r.id,
    state: r.state,
    destroying: r.destroying,
    isolation: r.isolation,
    tenant: r.tenant,
    agent: r.agent,
    template: r.template,
    template_version: r.templateVersion,
    cold: r.cold,
    pid: r.pid,
    user_config: r.userConfig,
    created_at: iso(r.createdAt),
    ready_at: iso(r.readyAt),
    claimed_at: iso(r.claimedAt),
    heartbeat_at: iso(r.heartbeatAt),
    synced_at: iso(r.syncedAt),
    stuck_at: iso(r.stuckAt),
    deleted_at: iso(r.deletedAt),
    error: r.error,
    node: r.node,
  };
}

export function presentTool(x: ToolRecord) {
  return {
    id: x.id,
    tool: x.tool,
    plugin: x.plugin,
    provisioning: x.provisioning,
    state: x.state,
    resource_id: x.resourceId,
    config: x.config,
    secret_ref: x.secretRef,
    created_at: iso(x.createdAt),
    updated_at: iso(x.updatedAt),
  };
}

/** Where an agent is reached, by tool id: what each live tool provisioned (an address, a binding, a number). */
export function addressesOf(tools: readonly ToolRecord[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const x of tools) if (x.state === "active" && x.resourceId !== null) out[x.tool] = x.resourceId;
  return out;
}

export function presentClaim(c: ClaimResult) {
  return {
    ...presentRuntime(c.runtime),
    cold: c.cold,
    addresses: c.addresses,
    tools: c.tools.map(presentTool),
    claim_ms: c.claimMs,
  };
}

export function presentStatus(s: PoolStatus) {
  return {
    min_idle: s.minIdle,
    isolation: s.isolation,
    isolation_reason: s.isolationReason,
    on_empty: s.onEmpty,
    by_state: s.byState,
  };
}

export function presentPlugin(p: ToolListing) {
  return {
    id: p.id,
    description: p.description,
    provisioning: [...p.provisioning],
    parameters: p.parameters,
    config_schema: p.configSchema ?? null,
  };
}

/** A template of the tenant, or a shared one of another tenant as `owner/name`. */
const TEMPLATE_REF = `^(${NAME_PATTERN.slice(1, -1)}/)?${NAME_PATTERN.slice(1, -1)}$`;
const NAME = new RegExp(NAME_PATTERN);

export const ClaimBody = Type.Object(
  {
    template: Type.String({
      pattern: TEMPLATE_REF,
      description: "the template's name in the tenant, or `owner/name` for a shared template of another tenant",
    }),
    agent: Type.String({
      pattern: NAME_PATTERN,
      description: "the agent's name in its tenant (an email tool's local part), unique among its claimed agents",
    }),
    user_config: Type.Optional(
      Type.Record(Type.String({ pattern: TOOL_ID_PATTERN }), Type.Record(Type.String(), Type.Unknown()), {
        description:
          "per tool id: non-secret settings and, for `provisioning: user` tools, the credentials (kept in the vault, never given to the runtime)",
      }),
    ),
  },
  { additionalProperties: false },
);

export const SyncBody = Type.Object(
  { template: Type.String({ pattern: TEMPLATE_REF, description: "every claimed runtime of this template" }) },
  { additionalProperties: false },
);

/** TypeBox's own Integer: Elysia's `t.Integer` would take the string "2" as 2. */
/** Actions on one runtime take no body, or an empty object (a malformed one is 400/422, never ignored). */
const NoBody = Type.Optional(Type.Object({}, { additionalProperties: false }));
/** Elysia lets an array through an optional object schema: checked here, before anything is looked up. */
function noBody(body: unknown): void {
  if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body)))
    throw new AppError("invalid_input", "the body must be an empty JSON object, or nothing");
}

export const PoolBody = Type.Object(
  { min_idle: Type.Integer({ minimum: 0, maximum: MAX_MIN_IDLE, description: "warm runtimes to keep ready" }) },
  { additionalProperties: false },
);

/** `?state=`: one of the runtime states, or absent. */
export function stateOf(value: string | undefined): RuntimeState | undefined {
  if (value === undefined || value === "") return undefined;
  if ((RUNTIME_STATES as readonly string[]).includes(value)) return value as RuntimeState;
  throw new AppError("invalid_input", `state must be one of ${RUNTIME_STATES.join(", ")}`);
}

/**
 * The agent pool on /v1 (docs/agents.md, docs/api.md#agents). A tenant token sees and acts on the
 * runtimes its tenants claimed, nothing else (another tenant's runtime is a 404, as everywhere);
 * unclaimed runtimes and the pool's size are an admin's.
 */
export function agentRoutes(deps: AgentRoutesDeps) {
  const { pool, tokens, clock } = deps;
  const actor = (p: Principal) => `token:${p.tokenId}`;

  /** The runtime, if the principal may see it: an admin any, a tenant token those its tenants claimed. */
  async function visible(p: Principal, id: string, access: "read" | "write"): Promise<RuntimeRecord> {
    const r = isId(id, "rt") ? await pool.get(id) : null;
    const tenant = r?.tenant ?? null;
    if (!r || (!isAdmin(p) && (tenant === null || !canAccess(p, tenant, "read"))))
      throw new AppError("not_found", "not found");
    if (access === "write" && tenant !== null && !canAccess(p, tenant, "write"))
      throw new AppError("forbidden", `this token may only read tenant ${tenant}`);
    return r;
  }

  /** The runtime of the URL's tenant (the gate has already checked the tenant). */
  async function ofTenant(tenant: string, id: string): Promise<RuntimeRecord> {
    const r = isId(id, "rt") ? await pool.get(id) : null;
    if (!r || r.tenant !== tenant) throw new AppError("not_found", "not found");
    return r;
  }

  async function shown(r: RuntimeRecord) {
    const tools = await pool.tools(r.id);
    return { ...presentRuntime(r), addresses: addressesOf(tools), tools: tools.map(presentTool) };
  }

  const logsOf = (r: RuntimeRecord) => ({
    items: pool.logs(r.id).map((l) => ({ at: iso(l.at), stream: l.stream, line: l.line })),
  });

  async function list(tenants: readonly string[] | undefined, query: Record<string, string | undefined>) {
    const page = readPage(query);
    // A token that sees no tenant (ingest) sees no runtime: an empty filter must not mean "any".
    if (tenants?.length === 0) return { items: [], next_cursor: null };
    if (page.after !== undefined && !isId(page.after, "rt"))
      throw new AppError("invalid_input", "the cursor is not one this API returned");
    const rows = await pool.list({
      ...(tenants ? { tenants } : {}),
      ...(stateOf(query.state) ? { state: stateOf(query.state) } : {}),
      ...(page.after ? { after: page.after } : {}),
      limit: page.limit + 1,
    });
    return pageOf(rows.map(presentRuntime), page.limit, (x) => x.id);
  }

  const tenantOf = async (value: string) => {
    if (!NAME.test(value) || !(await deps.resources.get({ tenant: value, kind: "tenants", name: value })))
      throw new AppError("not_found", "not found");
    return value;
  };

  // The pool's size and isolation: an admin's, refused before a body is read.
  const admin = new Elysia({ normalize: false })
    .use(authenticated(tokens, clock, { admin: true }))
    .get("/agents/pool", async () => presentStatus(await pool.status()))
    .put(
      "/agents/pool",
      async ({ principal, body }) => {
        await pool.setMinIdle(body.min_idle, actor(principal));
        return presentStatus(await pool.status());
      },
      { body: PoolBody, parse: "json" },
    );

  const agents = new Elysia({ normalize: false })
    .use(authenticated(tokens, clock, { tenantParam: true }))
    .get("/tools", () => ({ items: deps.tools().map(presentPlugin), next_cursor: null }))
    .get("/agents", ({ principal, query }) => {
      const q = query as Record<string, string | undefined>;
      return list(tenantsFor(principal, q.tenant || undefined), q);
    })
    .get("/agents/:id", async ({ principal, params }) => shown(await visible(principal, params.id, "read")))
    .get("/agents/:id/logs", async ({ principal, params }) => logsOf(await visible(principal, params.id, "read")))
    .delete("/agents/:id", async ({ principal, params }) => {
      const r = await visible(principal, params.id, "write");
      return presentRuntime(await pool.destroy(r.tenant, r.id, actor(principal)));
    })
    .get("/tenants/:tenant/agents", async ({ params, query }) =>
      list([await tenantOf(params.tenant)], query as Record<string, string | undefined>),
    )
    .post(
      "/tenants/:tenant/agents",
      async ({ principal, params, body, set }) => {
        const tenant = await tenantOf(params.tenant);
        const claim = await pool.claim(
          {
            tenant,
            template: body.template,
            agent: body.agent,
            ...(body.user_config ? { userConfig: body.user_config } : {}),
          },
          actor(principal),
        );
        set.status = 201;
        return presentClaim(claim);
      },
      { body: ClaimBody, parse: "json" },
    )
    .post(
      "/tenants/:tenant/agents/sync",
      async ({ principal, params, body }) => {
        const tenant = await tenantOf(params.tenant);
        const synced = await pool.sync(tenant, { template: body.template }, actor(principal));
        return { items: synced.map(presentRuntime), next_cursor: null };
      },
      { body: SyncBody, parse: "json" },
    )
    .get("/tenants/:tenant/agents/:id", async ({ params }) => shown(await ofTenant(params.tenant, params.id)))
    .get("/tenants/:tenant/agents/:id/logs", async ({ params }) => logsOf(await ofTenant(params.tenant, params.id)))
    .post(
      "/tenants/:tenant/agents/:id/release",
      async ({ principal, params, body }) => {
        noBody(body);
        const r = await ofTenant(params.tenant, params.id);
        return presentRuntime(await pool.release(params.tenant, r.id, actor(principal)));
      },
      { body: NoBody },
    )
    .post(
      "/tenants/:tenant/agents/:id/sync",
      async ({ principal, params, body }) => {
        noBody(body);
        const r = await ofTenant(params.tenant, params.id);
        const [synced] = await pool.sync(params.tenant, { id: r.id }, actor(principal));
        return presentRuntime(synced ?? r);
      },
      { body: NoBody },
    )
    .delete("/tenants/:tenant/agents/:id", async ({ principal, params }) => {
      const r = await ofTenant(params.tenant, params.id);
      return presentRuntime(await pool.destroy(params.tenant, r.id, actor(principal)));
    });

  return new Elysia({ normalize: false }).use(admin).use(agents);
}
