import { Elysia } from "elysia";
import type { Clock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import { parseJsonBounded, readBody, utf8 } from "../server/body.ts";
import type { TokenStore } from "../store/index.ts";
import { Authenticator, type Principal, requireAdmin, requireTenant } from "./auth.ts";

export interface Authenticated {
  principal: Principal;
}

/**
 * What a /v1 body may be, by route (docs/api.md): JSON resources are small; a template's
 * instructions may be 100,000 characters; a desired-state file is YAML.
 */
export const BODY_LIMITS = { json: 64 * 1024, template: 1024 * 1024, desired: 1024 * 1024 } as const;
const YAML_TYPES = new Set(["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"]);
const isJson = (type: string) => type === "application/json" || /^application\/[\w.-]+\+json$/.test(type);

/** A request whose body was empty: Elysia takes `undefined` from a parser as "not parsed". */
const NO_BODY = Symbol("no body");

/** The token's principal, looked up once per request (the parse gate and the derives share it). */
const principals = new WeakMap<Request, Principal>();

async function principalOf(
  auth: Authenticator,
  request: Request,
  set: { headers: Record<string, unknown> },
): Promise<Principal> {
  const known = principals.get(request);
  if (known) return known;
  let principal: Principal;
  try {
    principal = await auth.authenticate(request.headers.get("authorization"));
  } catch (e) {
    set.headers["www-authenticate"] = 'Bearer realm="agentowl"';
    throw e;
  }
  principals.set(request, principal);
  return principal;
}

const accessOf = (method: string): "read" | "write" => (method === "GET" || method === "HEAD" ? "read" : "write");
const GLOBAL_POLICIES = /^\/v1\/policies(\/|$)/;

/**
 * The body of a /v1 request, read only once the token is known good and the URL's tenant is one
 * it may use (guarantee 9 (docs/guarantees.md): authenticated before the body is read). Then, cheapest first: the
 * media type (415), the size while reading (413), UTF-8 (400), the nesting (422) and the JSON
 * syntax (400). A desired-state file stays text: it is parsed off the event loop (config.ts).
 */
async function gatedBody(
  auth: Authenticator,
  admin: boolean,
  c: { request: Request; params?: Record<string, string | undefined>; set: { headers: Record<string, unknown> } },
): Promise<unknown> {
  const { request } = c;
  const principal = await principalOf(auth, request, c.set);
  const tenant = c.params?.tenant;
  if (tenant !== undefined) requireTenant(principal, tenant, accessOf(request.method));
  // The global policies are an admin's: 403 before their body is validated (a 422 would tell a
  // tenant token how to write one).
  if (admin || GLOBAL_POLICIES.test(new URL(request.url).pathname)) requireAdmin(principal);

  const sent =
    request.body !== null &&
    (Number(request.headers.get("content-length") ?? 0) > 0 || request.headers.has("transfer-encoding"));
  if (!sent) return NO_BODY;
  const path = new URL(request.url).pathname;
  const yaml = path.startsWith("/v1/config/");
  const limit = yaml
    ? BODY_LIMITS.desired
    : /^\/v1\/tenants\/[^/]+\/templates(\/|$)/.test(path)
      ? BODY_LIMITS.template
      : BODY_LIMITS.json;
  const [type = "", ...params] = (request.headers.get("content-type") ?? "")
    .toLowerCase()
    .split(";")
    .map((s) => s.trim());
  const charset = params
    .find((p) => p.startsWith("charset="))
    ?.slice("charset=".length)
    .replaceAll('"', "");
  if (
    !(yaml ? YAML_TYPES.has(type) : isJson(type)) ||
    (charset !== undefined && charset !== "utf-8" && charset !== "utf8")
  ) {
    throw new AppError(
      "unsupported_media_type",
      yaml
        ? "send the desired-state file as Content-Type: application/yaml (UTF-8)"
        : "this route takes a JSON body: Content-Type: application/json (UTF-8)",
    );
  }
  const bytes = await readBody(request, limit);
  if (bytes.byteLength === 0) return NO_BODY;
  const text = utf8(bytes);
  return yaml ? text : parseJsonBounded(text);
}

/**
 * A route's own `parse: "json"` (or `"text"` for YAML) never runs: the gate above reads every body
 * first and always answers. It names the media type for the OpenAPI document, which lists none
 * for a route whose only parser is a function.
 *
 * Every route after this plugin needs a valid bearer token: 401 problem+json otherwise. The token
 * is checked before the body is read, by the parse gate above; routes without a body are checked
 * by the derive. With `tenantParam`, a route with a `:tenant` is also authorized here, in one
 * place and before the body is read: another tenant's route is 404 whatever the body, a read
 * token's write 403. With `admin`, every route after it is an admin's (403 before the body).
 *
 * A route gets the gate of the first of these plugins it inherits, so a plugin that uses one must
 * be mounted before any other (v1.ts mounts its route groups before its own).
 */
export function authenticated(tokens: TokenStore, clock: Clock, opts: { tenantParam?: boolean; admin?: boolean } = {}) {
  const auth = new Authenticator(tokens, clock);
  return (
    new Elysia({ normalize: false })
      .onParse({ as: "scoped" }, (c) =>
        gatedBody(auth, opts.admin === true, c as unknown as Parameters<typeof gatedBody>[2]),
      )
      .onTransform({ as: "scoped" }, (c) => {
        if ((c as { body: unknown }).body === NO_BODY) (c as { body: unknown }).body = undefined;
      })
      // derive, not resolve: it runs before body validation, so refusals never depend on the body.
      .derive({ as: "scoped" }, async ({ set, params, request }) => {
        const principal = await principalOf(auth, request, set);
        const tenant = (params as Record<string, string | undefined> | undefined)?.tenant;
        if (opts.tenantParam && tenant !== undefined) requireTenant(principal, tenant, accessOf(request.method));
        if (opts.admin) requireAdmin(principal);
        return { principal };
      })
  );
}

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 500;

/** `?limit=&cursor=`: the cursor is opaque to clients (base64url of the last key seen). */
export function readPage(query: Record<string, string | undefined>): { limit: number; after?: string } {
  const limit = query.limit === undefined ? DEFAULT_PAGE : Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new AppError("invalid_input", `limit must be a whole number from 1 to ${MAX_PAGE}`);
  }
  if (!query.cursor) return { limit };
  let after: unknown;
  try {
    after = JSON.parse(Buffer.from(query.cursor, "base64url").toString("utf8")).after;
  } catch {
    after = undefined;
  }
  if (typeof after !== "string") throw new AppError("invalid_input", "the cursor is not one this API returned");
  return { limit, after };
}

/** `{items, next_cursor}` from a page fetched with limit + 1 rows. */
export function pageOf<T>(
  rows: T[],
  limit: number,
  keyOf: (row: T) => string,
): { items: T[]; next_cursor: string | null } {
  const items = rows.slice(0, limit);
  const next =
    rows.length > limit ? Buffer.from(JSON.stringify({ after: keyOf(items.at(-1)!) })).toString("base64url") : null;
  return { items, next_cursor: next };
}
