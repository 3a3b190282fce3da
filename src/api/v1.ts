import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import type { LogTap } from "../core/log.ts";
import { SIGNING_SECRET_FORM, type Vault } from "../vault/vault.ts";
import { ControlPlane, METADATA_FIELDS, mergePatch } from "../control/service.ts";
import { DesiredParser } from "../control/desired/index.ts";
import { AppError } from "../errors/index.ts";
import { openapiDocument } from "./openapi.ts";
import {
  GLOBAL,
  type Kind,
  KIND_NAMES,
  KINDS,
  NAME_PATTERN,
  SINGULAR,
  TenantSpec,
} from "../control/resources/specs.ts";
import type { Precondition, ResourceKey, ResourceRecord } from "../store/index.ts";
import type { Storage } from "../store/index.ts";
import { SCHEMA_VERSION } from "../store/index.ts";
import { COMMIT, VERSION } from "../version.ts";
import { type Principal, requireAdmin, requireTenant, visibleTenants } from "./auth.ts";
import { PolicyCache } from "../policy/engine.ts";
import { approvalRoutes } from "./approvals.ts";
import { auditRoutes } from "./audit.ts";
import { type BackupTaker, backupRoutes } from "./backups.ts";
import { configRoutes } from "./config.ts";
import { eventRoutes } from "./events.ts";
import { type DeliveryActions, deliveryRoutes } from "./deliveries.ts";
import { policyRoutes } from "./policy.ts";
import { vaultRoutes } from "./vault.ts";
import { tokenRoutes } from "./tokens.ts";
import { userRoutes } from "./users.ts";
import { agentRoutes, type ToolListing } from "./agents.ts";
import type { AgentPool } from "../agents/types.ts";
import { Users } from "../users/index.ts";
import { type Authenticated, authenticated, pageOf, readPage } from "./http.ts";

export interface V1Deps {
  storage: Storage;
  clock: Clock;
  /** Live log lines for /v1/logs/tail (absent in tests that do not need it). */
  logTap?: LogTap | null;
  vault: Vault;
  /** Replay, retry, discard and endpoint status (the dispatcher). */
  dispatch: DeliveryActions;
  /** Where desired-state files are parsed (a worker thread); one of its own when absent. */
  desiredParser?: DesiredParser;
  /** Console users (the console shares the instance); one on this storage and clock when absent. */
  users?: Users;
  /** The agent pool (/v1/agents, /v1/tenants/:tenant/agents); absent: those routes are not served. */
  agents?: AgentPool | null;
  /** The registered tool plugins (/v1/tools, served with the pool). */
  tools?: () => readonly ToolListing[];
  /** POST /v1/backups (admin); absent: not served. */
  backups?: BackupTaker | null;
}

const NAME = new RegExp(NAME_PATTERN);
/** Not coerced by the framework: `[]` or `"x"` must reach mergePatch and fail there as a 422. */
const MergePatch = t.Unknown({ description: "an RFC 7396 JSON merge patch of the resource" });
const iso = (ms: number) => new Date(ms).toISOString();

/** A resource as the API shows it: the spec's fields, then its metadata. */
export function present(r: ResourceRecord): Record<string, unknown> {
  return {
    ...(r.kind === "tenants" ? {} : r.tenant === GLOBAL ? { global: true } : { tenant: r.tenant }),
    ...(r.spec as Record<string, unknown>),
    resource_version: r.resourceVersion,
    created_at: iso(r.createdAt),
    updated_at: iso(r.updatedAt),
  };
}

/** `If-Match: "3"`, `"3", "4"`, `*`; `If-None-Match: *`. Unparseable tags match nothing. */
export function preconditions(headers: Record<string, string | undefined>): Precondition {
  const pre: Precondition = {};
  const ifMatch = headers["if-match"]?.trim();
  if (ifMatch) {
    pre.ifMatch =
      ifMatch === "*"
        ? "*"
        : ifMatch.split(",").map((tag) => Number(/^\s*(?:W\/)?"?(\d+)"?\s*$/.exec(tag)?.[1] ?? Number.NaN));
  }
  if (headers["if-none-match"]?.trim() === "*") pre.ifNoneMatch = true;
  return pre;
}

/** A name from the URL: one that could never exist is simply not found. */
function name(value: string): string {
  if (!NAME.test(value)) throw new AppError("not_found", "not found");
  return value;
}

/** The body of a PUT/POST: metadata a client copied from a GET is dropped; the name comes from the URL when absent. */
function specFrom(body: unknown, urlName?: string): Record<string, unknown> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new AppError("invalid_input", "the body must be a JSON object", {
      errors: [{ field: "/", message: "must be a JSON object" }],
    });
  }
  const spec: Record<string, unknown> = { ...(body as Record<string, unknown>) };
  for (const f of METADATA_FIELDS) delete spec[f];
  if (urlName !== undefined) {
    spec.name ??= urlName;
    if (spec.name !== urlName)
      throw new AppError("invalid_input", "the name in the body differs from the URL", {
        errors: [{ field: "/name", message: `must be ${urlName}, as in the URL` }],
      });
  }
  return spec;
}

function withEtag(set: { headers: Record<string, unknown>; status?: unknown }, r: ResourceRecord, status = 200) {
  set.headers.etag = `"${r.resourceVersion}"`;
  set.status = status;
  return present(r);
}

/**
 * Before validation: drop metadata a client copied from a GET, and take the name from the URL.
 * Only on resource routes: the other route groups' bodies must be refused, not trimmed, when
 * they carry fields they do not take.
 */
function dropMetadata({ body, params, route }: { body: unknown; params?: unknown; route: string }): void {
  const kind = /^\/v1(?:\/tenants\/:tenant)?\/([a-z]+)(\/:name)?$/.exec(route)?.[1];
  const isResource =
    route === "/v1/tenants" ||
    route === "/v1/tenants/:tenant" ||
    (kind !== undefined && (KIND_NAMES as readonly string[]).includes(kind));
  if (!isResource || body === null || typeof body !== "object" || Array.isArray(body)) return;
  const b = body as Record<string, unknown>;
  for (const f of METADATA_FIELDS) delete b[f];
  const p = (params ?? {}) as Record<string, string | undefined>;
  const urlName = route.endsWith("/:name") ? p.name : route === "/v1/tenants/:tenant" ? p.tenant : undefined;
  if (urlName !== undefined) b.name ??= urlName;
}

/**
 * An endpoint's signing secret must be one the official Standard Webhooks libraries accept
 * (noted by the vault when it was set): otherwise every delivery it signs is refused by them.
 * The console's forms check it the same way.
 */
export async function signingSecretCheck(
  vault: Pick<Vault, "describe">,
  key: ResourceKey,
  spec: Record<string, unknown>,
): Promise<void> {
  if (key.kind !== "endpoints" || typeof spec.signing_secret !== "string" || !spec.signing_secret.startsWith("vault:"))
    return;
  const ref = spec.signing_secret;
  const info = await vault.describe(ref.slice("vault:".length));
  if (info?.format === "opaque") {
    throw new AppError("invalid_input", `the endpoint is not valid`, {
      errors: [
        {
          field: "/signing_secret",
          message: `${ref} is not a Standard Webhooks secret (${SIGNING_SECRET_FORM}): rotate it to such a value`,
        },
      ],
    });
  }
}

/**
 * The control-plane API (docs/api.md): tenants and their resources addressed by name, versioned with
 * ETag / If-Match, validated with the schemas of src/control/resources/specs.ts, behind bearer tokens.
 */
export function v1Api(deps: V1Deps) {
  const { storage } = deps;
  const control = new ControlPlane(storage.resources, storage.audit);
  const actor = (p: Principal) => `token:${p.tokenId}`;

  const tenantKey = (tenant: string): ResourceKey => ({ tenant, kind: "tenants", name: tenant });

  let app = new Elysia({ prefix: "/v1", normalize: false })
    .use(
      openapiDocument({
        info: {
          title: "AgentOwl control plane",
          version: VERSION,
          description: "Bearer token required on every route but this document.",
        },
        components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
        security: [{ bearer: [] }],
      }),
    )
    // Route groups that authenticate by themselves come first: a route takes the body gate of the
    // first authenticated() it inherits (http.ts), and theirs may say more (admin only).
    .use(tokenRoutes(storage.tokens, storage.audit, deps.clock))
    .use(deps.backups ? backupRoutes(deps.backups, storage.tokens, deps.clock) : new Elysia({ normalize: false }))
    .use(userRoutes(deps.users ?? new Users({ storage, clock: deps.clock }), storage.tokens, deps.clock))
    .use(
      configRoutes(
        storage.resources,
        storage.audit,
        deps.vault,
        storage.tokens,
        deps.clock,
        deps.desiredParser ?? new DesiredParser(),
      ),
    )
    .use(eventRoutes(storage.events, storage.tokens, deps.clock, deps.logTap ?? null))
    .use(deliveryRoutes(storage.events, storage.resources, deps.dispatch, storage.tokens, deps.clock))
    .use(auditRoutes(storage.audit, storage.tokens, deps.clock))
    .use(policyRoutes(storage, new PolicyCache(), deps.clock))
    .use(approvalRoutes(storage.approvals, storage.events, storage.tokens, deps.clock))
    .use(vaultRoutes(deps.vault, storage.resources, storage.tokens, deps.clock))
    .use(
      deps.agents
        ? agentRoutes({
            pool: deps.agents,
            tools: deps.tools ?? (() => []),
            resources: storage.resources,
            tokens: storage.tokens,
            clock: deps.clock,
          })
        : new Elysia({ normalize: false }),
    )
    // Creating a tenant is an admin's, decided before the body is read.
    .use(
      new Elysia({ normalize: false })
        .use(authenticated(storage.tokens, deps.clock, { admin: true }))
        .onTransform(dropMetadata)
        .post(
          "/tenants",
          async ({ principal, body, set }) => {
            const spec = specFrom(body);
            const { record } = await control.put(tenantKey(spec.name as string), spec, {
              mode: "create",
              actor: actor(principal),
            });
            return withEtag(set, record, 201);
          },
          { body: TenantSpec, parse: "json" },
        ),
    )
    .use(authenticated(storage.tokens, deps.clock, { tenantParam: true }))
    .onTransform(dropMetadata)
    .get("/version", ({ principal }: Authenticated) => ({
      version: VERSION,
      commit: COMMIT,
      schema_version: SCHEMA_VERSION,
      api: { current: "v1", supported: ["v1"] },
      // Who is calling (never the token itself): `agentowl login` shows it.
      token: { id: principal.tokenId, name: principal.name, scopes: principal.scopes },
    }))
    // ---- tenants --------------------------------------------------------------------------
    .get("/tenants", async ({ principal, query }: Authenticated & { query: Record<string, string | undefined> }) => {
      const page = readPage(query);
      const visible = visibleTenants(principal);
      const rows = await storage.resources.list({
        kind: "tenants",
        after: page.after,
        limit: page.limit + 1,
        ...(visible === "all" ? {} : { tenants: visible }),
      });
      return pageOf(rows.map(present), page.limit, (x) => x.name as string);
    })
    .get("/tenants/:tenant", async ({ principal, params, set }) => {
      const tenant = name(params.tenant);
      requireTenant(principal, tenant, "read");
      const r = await storage.resources.get(tenantKey(tenant));
      if (!r) throw new AppError("not_found", "not found");
      return withEtag(set, r);
    })
    .put(
      "/tenants/:tenant",
      async ({ principal, params, body, headers, set }) => {
        const tenant = name(params.tenant);
        requireTenant(principal, tenant, "write");
        const exists = await storage.resources.get(tenantKey(tenant));
        if (!exists) requireAdmin(principal);
        const spec = specFrom(body, tenant);
        const { record } = await control.put(tenantKey(tenant), spec, {
          mode: "upsert",
          pre: preconditions(headers),
          actor: actor(principal),
        });
        return withEtag(set, record, exists ? 200 : 201);
      },
      { body: TenantSpec, parse: "json" },
    )
    .patch(
      "/tenants/:tenant",
      async ({ principal, params, body, headers, set }) => {
        const tenant = name(params.tenant);
        requireTenant(principal, tenant, "write");
        return withEtag(set, await patchResource(tenantKey(tenant), body, preconditions(headers), principal));
      },
      { body: MergePatch, parse: "json" },
    )
    .delete("/tenants/:tenant", async ({ principal, params, headers, set }) => {
      const tenant = name(params.tenant);
      requireTenant(principal, tenant, "read");
      requireAdmin(principal);
      await control.delete(tenantKey(tenant), { pre: preconditions(headers), actor: actor(principal) });
      set.status = 204;
    });

  const checkSigningSecret = (key: ResourceKey, spec: Record<string, unknown>) =>
    signingSecretCheck(deps.vault, key, spec);

  async function patchResource(
    key: ResourceKey,
    patch: unknown,
    pre: Precondition,
    principal: Principal,
  ): Promise<ResourceRecord> {
    const current = await storage.resources.get(key);
    if (!current) throw new AppError("not_found", "not found");
    const spec = specFrom(mergePatch(current.spec, specFrom(patch)), key.name);
    await checkSigningSecret(key, spec);
    // Without If-Match, the patch applies to the version it was computed from: a concurrent
    // writer in between makes it fail rather than silently lose that writer's change.
    const { record } = await control.put(key, spec, {
      mode: "update",
      pre: pre.ifMatch ? pre : { ifMatch: [current.resourceVersion] },
      actor: actor(principal),
    });
    return record;
  }

  /**
   * One set of routes per kind, each with its own schema, under `base`: the tenant-scoped kinds
   * under /tenants/:tenant/<kind>, the global policies under /policies (admin only).
   */
  interface Scope {
    base: string;
    kind: Kind;
    /** The owner named by the URL, once the caller may `access` it; `listing` also checks it exists. */
    owner(
      principal: Principal,
      params: Record<string, string>,
      access: "read" | "write",
      listing?: boolean,
    ): Promise<string>;
  }
  const label = (k: ResourceKey) =>
    k.tenant === GLOBAL
      ? `global ${SINGULAR[k.kind as Kind]} ${k.name}`
      : `${SINGULAR[k.kind as Kind]} ${k.tenant}/${k.name}`;
  type Ctx = Authenticated & {
    params: Record<string, string>;
    query: Record<string, string | undefined>;
    headers: Record<string, string | undefined>;
    body: unknown;
    set: { headers: Record<string, unknown>; status?: unknown };
  };

  function kindRoutes(scope: Scope) {
    const { base, kind } = scope;
    const schema = KINDS[kind];
    const key = (tenant: string, n: string): ResourceKey => ({ tenant, kind, name: n });
    app = app
      .get(base, async ({ principal, params, query }: Ctx) => {
        const tenant = await scope.owner(principal, params, "read", true);
        const page = readPage(query);
        const rows = await storage.resources.list({ tenant, kind, after: page.after, limit: page.limit + 1 });
        return pageOf(rows.map(present), page.limit, (x) => x.name as string);
      })
      .post(
        base,
        async ({ principal, params, body, set }: Ctx) => {
          const tenant = await scope.owner(principal, params, "write");
          const spec = specFrom(body);
          await checkSigningSecret(key(tenant, spec.name as string), spec);
          const { record } = await control.put(key(tenant, spec.name as string), spec, {
            mode: "create",
            actor: actor(principal),
          });
          return withEtag(set, record, 201);
        },
        { body: schema, parse: "json" },
      )
      .get(`${base}/:name`, async ({ principal, params, set }: Ctx) => {
        const k = key(await scope.owner(principal, params, "read"), name(params.name!));
        const r = await storage.resources.get(k);
        if (!r) throw new AppError("not_found", `${label(k)} not found`);
        return withEtag(set, r);
      })
      .get(`${base}/:name/versions`, async ({ principal, params }: Ctx) => {
        const k = key(await scope.owner(principal, params, "read"), name(params.name!));
        const versions = await storage.resources.history(k);
        if (!versions.length) throw new AppError("not_found", `${label(k)} not found`);
        return {
          items: versions.map((v) => ({
            resource_version: v.resourceVersion,
            op: v.op,
            spec: v.spec,
            actor: v.actor,
            changed_at: iso(v.changedAt),
          })),
          next_cursor: null,
        };
      })
      .put(
        `${base}/:name`,
        async ({ principal, params, body, headers, set }: Ctx) => {
          const tenant = await scope.owner(principal, params, "write");
          const spec = specFrom(body, name(params.name!));
          await checkSigningSecret(key(tenant, params.name!), spec);
          const { record, created } = await control.put(key(tenant, params.name!), spec, {
            mode: "upsert",
            pre: preconditions(headers),
            actor: actor(principal),
          });
          return withEtag(set, record, created ? 201 : 200);
        },
        { body: schema, parse: "json" },
      )
      .patch(
        `${base}/:name`,
        async ({ principal, params, body, headers, set }: Ctx) => {
          const k = key(await scope.owner(principal, params, "write"), name(params.name!));
          return withEtag(set, await patchResource(k, body, preconditions(headers), principal));
        },
        { body: MergePatch, parse: "json" },
      )
      .delete(`${base}/:name`, async ({ principal, params, headers, set }: Ctx) => {
        const k = key(await scope.owner(principal, params, "write"), name(params.name!));
        await control.delete(k, { pre: preconditions(headers), actor: actor(principal) });
        set.status = 204;
      }) as unknown as typeof app;
  }

  for (const kind of KIND_NAMES) {
    kindRoutes({
      base: `/tenants/:tenant/${kind}`,
      kind,
      async owner(principal, params, access, listing) {
        const tenant = name(params.tenant!);
        requireTenant(principal, tenant, access);
        if (listing && !(await storage.resources.get(tenantKey(tenant)))) throw new AppError("not_found", "not found");
        return tenant;
      },
    });
  }
  kindRoutes({
    base: "/policies",
    kind: "policies",
    async owner(principal) {
      requireAdmin(principal);
      return GLOBAL;
    },
  });
  return app;
}
