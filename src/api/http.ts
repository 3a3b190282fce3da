import { Elysia } from "elysia";
import type { Clock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import type { TokenStore } from "../store/contract.ts";
import { Authenticator, type Principal, requireTenant } from "./auth.ts";

export interface Authenticated {
  principal: Principal;
}

/**
 * Every route after this plugin needs a valid bearer token: 401 problem+json otherwise. With
 * `tenantParam`, a route with a `:tenant` is also authorized here, in one place and before the
 * body is validated: another tenant's route is 404 whatever the body, a read token's write 403.
 */
export function authenticated(tokens: TokenStore, clock: Clock, opts: { tenantParam?: boolean } = {}) {
  const auth = new Authenticator(tokens, clock);
  // derive, not resolve: it runs before body validation, so refusals never depend on the body.
  return new Elysia({ normalize: false }).derive({ as: "scoped" }, async ({ headers, set, params, request }) => {
    let principal: Principal;
    try {
      principal = await auth.authenticate(headers.authorization);
    } catch (e) {
      set.headers["www-authenticate"] = 'Bearer realm="agentowl"';
      throw e;
    }
    const tenant = (params as Record<string, string | undefined> | undefined)?.tenant;
    if (opts.tenantParam && tenant !== undefined) {
      requireTenant(principal, tenant, request.method === "GET" || request.method === "HEAD" ? "read" : "write");
    }
    return { principal };
  });
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
export function pageOf<T>(rows: T[], limit: number, keyOf: (row: T) => string): { items: T[]; next_cursor: string | null } {
  const items = rows.slice(0, limit);
  const next = rows.length > limit ? Buffer.from(JSON.stringify({ after: keyOf(items.at(-1)!) })).toString("base64url") : null;
  return { items, next_cursor: next };
}
