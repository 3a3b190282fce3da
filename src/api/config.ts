import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { applyDesired, type SecretIndex } from "../control/apply.ts";
import { type DesiredState, formatProblem, parseDesired, renderPlan } from "../desired/index.ts";
import { AppError } from "../errors/index.ts";
import type { SqliteAudit, SqliteResources, SqliteTokens } from "../store/index.ts";
import { canAccess, isAdmin, type Principal } from "./auth.ts";
import { authenticated } from "./http.ts";

export const MAX_DESIRED_BYTES = 1024 * 1024;

const Query = t.Object({
  file: t.Optional(t.String({ maxLength: 200 })),
  prune: t.Optional(t.Union([t.Literal("true"), t.Literal("false")])),
  dry_run: t.Optional(t.Union([t.Literal("true"), t.Literal("false")])),
});

/** YAML in, every problem out as `file:line:col` (422), or the parsed desired state. */
function parse(body: unknown, file: string): DesiredState {
  const text = typeof body === "string" ? body : body instanceof Uint8Array ? new TextDecoder().decode(body) : null;
  if (text === null) throw new AppError("invalid_input", "send the YAML file as the request body (Content-Type: application/yaml)");
  if (text.length > MAX_DESIRED_BYTES) throw new AppError("too_large", `a desired-state file may have at most ${MAX_DESIRED_BYTES} bytes`);
  const result = parseDesired(text, file);
  if ("errors" in result) {
    throw new AppError("invalid_input", `${file} is not valid: ${result.errors.length} problem(s)`, {
      errors: result.errors.map((p) => ({ field: `${p.file}:${p.line}:${p.column}`, message: p.message, text: formatProblem(p) })),
    });
  }
  return result.state;
}

/**
 * Which tenants a principal may plan against. An admin: all (so --prune may delete tenants the
 * file does not declare). Anyone else: the tenants the file declares, each of which it must be
 * allowed to write (404 otherwise, as everywhere across tenants); it cannot create tenants.
 */
async function scopeFor(p: Principal, desired: DesiredState, access: "read" | "write", exists: (tenant: string) => Promise<boolean>): Promise<"all" | string[]> {
  if (isAdmin(p)) return "all";
  if (desired.policies?.length) throw new AppError("forbidden", "global policies (the file's top-level policies) need an admin token");
  const declared = desired.tenants.map((s) => s.tenant.name);
  for (const tenant of declared) {
    if (!canAccess(p, tenant, access) || !(await exists(tenant))) throw new AppError("not_found", "not found");
  }
  return declared;
}

/** POST /v1/config/validate | diff | apply, with the YAML file as the body (SPEC §6). */
export function configRoutes(resources: SqliteResources, audit: SqliteAudit, secrets: SecretIndex, tokens: SqliteTokens, clock: Clock) {
  const exists = async (tenant: string) => (await resources.get({ tenant, kind: "tenants", name: tenant })) !== null;
  const run = async (principal: Principal, body: unknown, query: { file?: string; prune?: string; dry_run?: string }, mode: "diff" | "apply") => {
    const file = query.file ?? "agentowl.yaml";
    const desired = parse(body, file);
    const scope = await scopeFor(principal, desired, mode === "apply" ? "write" : "read", exists);
    // diff shows what would change; apply (dry run included) also checks the vault references.
    const result = await applyDesired(resources, audit, mode === "apply" ? secrets : { existsTx: () => true }, desired, {
      prune: query.prune === "true",
      dryRun: mode === "diff" || query.dry_run === "true",
      actor: `token:${principal.tokenId}`,
      scope,
    });
    return { ...result, text: renderPlan(result.changes) };
  };
  return new Elysia({ prefix: "/config", normalize: false })
    .use(authenticated(tokens, clock))
    .post(
      "/validate",
      ({ body, query }) => {
        const desired = parse(body, query.file ?? "agentowl.yaml");
        return { valid: true, tenants: desired.tenants.map((s) => s.tenant.name), policies: (desired.policies ?? []).map((p) => p.name) };
      },
      { parse: "text", query: Query, body: t.String({ description: "the desired-state YAML file" }) },
    )
    .post("/diff", ({ principal, body, query }) => run(principal, body, query, "diff"), { parse: "text", query: Query, body: t.String() })
    .post("/apply", ({ principal, body, query }) => run(principal, body, query, "apply"), { parse: "text", query: Query, body: t.String() });
}
