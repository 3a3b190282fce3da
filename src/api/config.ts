import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { applyDesired, type SecretIndex } from "../control/apply.ts";
import {
  type DesiredState,
  formatProblem,
  type LocatedProblem,
  renderDesired,
  renderPlan,
} from "../control/desired/index.ts";
import { readTenantState } from "../control/state.ts";
import type { LocatedRef } from "../control/desired/index.ts";
import { SIGNING_SECRET_FORM } from "../vault/vault.ts";
import type { DesiredParser } from "../control/desired/index.ts";
import { AppError } from "../errors/index.ts";
import type { AuditLog, ResourceStore, TokenStore } from "../store/index.ts";
import { canAccess, isAdmin, type Principal, requireTenant } from "./auth.ts";
import { authenticated } from "./http.ts";

const Query = t.Object({
  file: t.Optional(t.String({ maxLength: 200 })),
  prune: t.Optional(t.Union([t.Literal("true"), t.Literal("false")])),
  dry_run: t.Optional(t.Union([t.Literal("true"), t.Literal("false")])),
});

/**
 * YAML in (the body as text: its size, media type and UTF-8 were checked as it was read, see
 * http.ts), parsed in the worker thread, every problem out as `file:line:col` (422).
 */
async function parse(
  parser: DesiredParser,
  body: unknown,
  file: string,
): Promise<{ state: DesiredState; refs: LocatedRef[] }> {
  if (typeof body !== "string")
    throw new AppError("invalid_input", "send the YAML file as the request body (Content-Type: application/yaml)");
  const result = await parser.parse(body, file);
  if ("errors" in result) throw invalidFile(file, result.errors);
  return result;
}

function invalidFile(file: string, problems: readonly LocatedProblem[]): AppError {
  return new AppError("invalid_input", `${file} is not valid: ${problems.length} problem(s)`, {
    errors: problems.map((p) => ({
      field: `${p.file}:${p.line}:${p.column}`,
      message: p.message,
      text: formatProblem(p),
    })),
  });
}

/** Each reference to a secret the vault does not have, at its place in the file. */
async function secretProblems(refs: readonly LocatedRef[], secrets: SecretIndex): Promise<LocatedProblem[]> {
  const problems: LocatedProblem[] = [];
  for (const r of refs) {
    const scope = r.ref.slice("vault:".length);
    const info = await secrets.describe(scope);
    const at = { file: r.file, line: r.line, column: r.column };
    if (!info)
      problems.push({
        ...at,
        message: `${r.subject}: ${r.field} names ${r.ref}, which is not in the vault (set it first: agentowl vault set ${scope})`,
      });
    else if (r.field === "signing_secret" && info.format === "opaque") {
      problems.push({
        ...at,
        message: `${r.subject}: signing_secret names ${r.ref}, which is not a Standard Webhooks secret (${SIGNING_SECRET_FORM}): rotate it to such a value`,
      });
    }
  }
  return problems;
}

/**
 * Which tenants a principal may plan against. An admin: all (so --prune may delete tenants the
 * file does not declare). Anyone else: the tenants the file declares, each of which it must be
 * allowed to write (404 for a tenant it cannot see, as everywhere across tenants; 403 for one it
 * may only read); it cannot create tenants.
 */
async function scopeFor(
  p: Principal,
  desired: DesiredState,
  access: "read" | "write",
  exists: (tenant: string) => Promise<boolean>,
): Promise<"all" | string[]> {
  if (isAdmin(p)) return "all";
  if (desired.policies?.length)
    throw new AppError("forbidden", "global policies (the file's top-level policies) need an admin token");
  const declared = desired.tenants.map((s) => s.tenant.name);
  for (const tenant of declared) {
    if (!canAccess(p, tenant, "read") || !(await exists(tenant))) throw new AppError("not_found", "not found");
    if (!canAccess(p, tenant, access)) throw new AppError("forbidden", `this token may only read tenant ${tenant}`);
  }
  return declared;
}

/**
 * POST /v1/config/validate | diff | apply, with the YAML file as the body (docs/desired-state.md);
 * GET /v1/config/export?tenant=: a tenant's configuration as such a file.
 */
export function configRoutes(
  resources: ResourceStore,
  audit: AuditLog,
  secrets: SecretIndex,
  tokens: TokenStore,
  clock: Clock,
  parser: DesiredParser,
) {
  const exists = async (tenant: string) => (await resources.get({ tenant, kind: "tenants", name: tenant })) !== null;
  /**
   * The file parsed, the caller's scope in it (404 / 403 before anything about its contents is
   * said), then its vault references: validate, diff and apply all name each missing secret at its
   * place in the file. Only after the scope check, or a token could probe another tenant's vault.
   */
  const load = async (principal: Principal, body: unknown, file: string, access: "read" | "write") => {
    const { state, refs } = await parse(parser, body, file);
    const scope = await scopeFor(principal, state, access, exists);
    const missing = await secretProblems(refs, secrets);
    if (missing.length) throw invalidFile(file, missing);
    return { desired: state, scope };
  };
  const run = async (
    principal: Principal,
    body: unknown,
    query: { file?: string; prune?: string; dry_run?: string },
    mode: "diff" | "apply",
  ) => {
    const file = query.file ?? "agentowl.yaml";
    const { desired, scope } = await load(principal, body, file, mode === "apply" ? "write" : "read");
    const result = await applyDesired(resources, audit, secrets, desired, {
      prune: query.prune === "true",
      dryRun: mode === "diff" || query.dry_run === "true",
      actor: `token:${principal.tokenId}`,
      scope,
    });
    return { ...result, text: renderPlan(result.changes) };
  };
  return (
    new Elysia({ prefix: "/config", normalize: false })
      .use(authenticated(tokens, clock))
      // Before the file is parsed: a token that can write nothing cannot apply anything.
      .derive({ as: "local" }, ({ principal, request }) => {
        if (
          new URL(request.url).pathname.endsWith("/apply") &&
          !isAdmin(principal) &&
          !principal.scopes.some((s) => s.endsWith(":write"))
        ) {
          throw new AppError(
            "forbidden",
            "applying a file needs a token that may write (tenant:<name>:write or admin)",
          );
        }
        return {};
      })
      .post(
        "/validate",
        async ({ principal, body, query }) => {
          const { desired } = await load(principal, body, query.file ?? "agentowl.yaml", "read");
          return {
            valid: true,
            tenants: desired.tenants.map((s) => s.tenant.name),
            policies: (desired.policies ?? []).map((p) => p.name),
          };
        },
        { parse: "text", query: Query, body: t.String({ description: "the desired-state YAML file" }) },
      )
      .post("/diff", ({ principal, body, query }) => run(principal, body, query, "diff"), {
        parse: "text",
        query: Query,
        body: t.String(),
      })
      .post("/apply", ({ principal, body, query }) => run(principal, body, query, "apply"), {
        parse: "text",
        query: Query,
        body: t.String(),
      })
      .get(
        "/export",
        async ({ principal, query, set }) => {
          requireTenant(principal, query.tenant, "read");
          const state = await readTenantState(resources, query.tenant);
          if (!state) throw new AppError("not_found", "not found");
          set.headers["content-type"] = "application/yaml; charset=utf-8";
          return renderDesired({ tenants: [state] });
        },
        { query: t.Object({ tenant: t.String({ maxLength: 63, description: "the tenant to export" }) }) },
      )
  );
}
