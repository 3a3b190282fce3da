import { randomBytes } from "node:crypto";
import { type Chrome, ErrorPage, renderPage } from "../../web/index.ts";
import { type Principal, visibleTenants } from "../api/auth.ts";
import type { DeliveryActions } from "../api/deliveries.ts";
import { NAME_PATTERN } from "../control/resources/specs.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger, LogTap } from "../core/log.ts";
import { isAppError } from "../errors/index.ts";
import { readBody } from "../server/body.ts";
import type { Storage } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import type { AgentPool } from "../agents/types.ts";
import { ASSET_PATHS } from "./assets.ts";
import type { DiskUsage } from "./dashboard.ts";
import type { LiveHub } from "./live.ts";
import {
  type ConsoleAuth,
  type ConsoleSession,
  cookiesOf,
  overTls,
  PRE_SESSION_COOKIE,
  safeNext,
  sameSecret,
  SESSION_COOKIE,
  setCookie,
} from "./auth.ts";
import { pageResponse, redirect } from "./headers.ts";

export interface ConsoleDeps {
  storage: Storage;
  clock: Clock;
  /** Users and sessions (src/users' `Users`); null: nobody can sign in (the pages say so). */
  auth: ConsoleAuth | null;
  /** The header's name for this appliance (its mail domain). */
  appliance: string;
  /** AGENTOWL_BOOTSTRAP_TOKEN: proves the person creating the first admin runs the appliance. */
  bootstrapToken: string | null;
  /** Endpoints whose circuit is not closed, as `tenant/endpoint` (the dispatcher's breakers). */
  circuits: () => readonly (readonly [
    string,
    { state: string; consecutiveFailures: number; retryAt: number | null },
  ])[];
  log: Logger;
  /** Replay, retry and discard: the dispatcher's operator actions, as /v1 uses them. */
  dispatch?: DeliveryActions;
  /** The secrets vault, as /v1/tenants/:tenant/secrets uses it; the configuration forms check `vault:` references with it. */
  vault?: Vault;
  /** Live (already redacted) log lines, as /v1/logs/tail reads them. */
  logTap?: LogTap | null;
  /** The live updates' streams (src/console/live.ts); none: `/console/live` is a 404. */
  live?: LiveHub | null;
  /** The data dir's disk, database and spool sizes for the dashboard (src/console/dashboard.ts `dataDirUsage`); none: not shown. */
  usage?: () => Promise<DiskUsage>;
  /** The agent pool, as /v1/agents uses it; none: the agents page says the appliance runs none. */
  agents?: AgentPool | null;
  /** How far back the inbox lists mail (inbox_window; default 24 hours). */
  inboxWindowMs?: number;
}

/** A form body is small: a sign-in, a filter, a button. */
export const FORM_LIMIT = 16 * 1024;
export const PAGE = 50;
export const DAY_MS = 24 * 3600_000;
export const NAME = new RegExp(NAME_PATTERN);
export const iso = (ms: number) => new Date(ms).toISOString();

/** What a handler that needs the client's address takes of Elysia's context. */
export interface WithServer {
  request: Request;
  server: { requestIP(r: Request): { address: string } | null } | null;
}

export interface Visitor {
  token: string;
  session: ConsoleSession;
  principal: Principal;
}

/** The fields of a urlencoded form (htmx and plain forms send that); anything else has none. */
export async function formOf(request: Request): Promise<URLSearchParams> {
  const bytes = await readBody(request, FORM_LIMIT);
  const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") return new URLSearchParams();
  return new URLSearchParams(new TextDecoder().decode(bytes));
}

/** The CSRF token a request sent: the X-CSRF-Token header (htmx), else the form's `_csrf`. */
export const sentCsrf = (request: Request, form: URLSearchParams) =>
  request.headers.get("x-csrf-token") ?? form.get("_csrf");

export const queryString = (q: Record<string, string>) => {
  const s = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== "")).toString();
  return s ? `?${s}` : "";
};

/**
 * What every console page handler shares (docs/console.md): the page chrome, responses with the
 * security headers, the signed-in visitor, failures as pages, the pre-session token of the
 * sign-in forms. Each area of the console (src/console/*.ts) is an Elysia plugin built on it.
 */
export function consoleKit(deps: ConsoleDeps) {
  const { storage, auth } = deps;
  const chromeFor = (v: Visitor | null, current: Chrome["current"] = null): Chrome => ({
    appliance: deps.appliance,
    assets: ASSET_PATHS,
    user: v ? { username: v.session.user.username, role: v.session.user.role } : null,
    csrf: v?.session.csrf ?? null,
    current,
  });
  const html = async (page: Parameters<typeof renderPage>[0], status = 200, extra: Record<string, string> = {}) =>
    pageResponse(await renderPage(page), status, extra);
  const notFound = (v: Visitor | null) =>
    html(
      ErrorPage({ chrome: chromeFor(v), title: "Not found", text: "There is nothing here, or nothing you may see." }),
      404,
    );
  const refused = (v: Visitor | null, text: string) =>
    html(ErrorPage({ chrome: chromeFor(v), title: "Refused", text }), 403);
  const unavailable = () =>
    html(
      ErrorPage({
        chrome: chromeFor(null),
        title: "Sign-in unavailable",
        text: "This appliance has no console users configured.",
      }),
      503,
    );

  async function visitor(request: Request): Promise<Visitor | null> {
    const token = cookiesOf(request).get(SESSION_COOKIE);
    if (!auth || !token) return null;
    const session = await auth.session(token);
    return session ? { token, session, principal: auth.principalOf(session.user) } : null;
  }

  /** Failures as pages with the console's headers, never the API's problem+json. */
  const guarded =
    <C extends { request: Request }>(handler: (c: C) => Promise<Response>) =>
    async (c: C): Promise<Response> => {
      try {
        return await handler(c);
      } catch (e) {
        if (isAppError(e) && e.kind === "too_large")
          return html(ErrorPage({ chrome: chromeFor(null), title: "Too large", text: e.detail }), 413);
        if (isAppError(e) && e.kind === "invalid_input")
          return html(ErrorPage({ chrome: chromeFor(null), title: "Not understood", text: e.detail }), 400);
        deps.log.error("console request failed", { path: new URL(c.request.url).pathname, err: e });
        return html(
          ErrorPage({ chrome: chromeFor(null), title: "Something went wrong", text: "The error was logged." }),
          500,
        );
      }
    };

  /** A page behind sign-in: without a session, 303 to the sign-in form, which comes back here. */
  const signedIn = <C extends { request: Request }>(handler: (v: Visitor, c: C) => Promise<Response>) =>
    guarded<C>(async (c) => {
      const v = await visitor(c.request);
      if (!v) {
        const url = new URL(c.request.url);
        return redirect(`/console/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`, 303);
      }
      return handler(v, c);
    });

  /** The pre-session token the sign-in forms carry (double submit): the cookie's, or a new one. */
  function preSession(request: Request): { token: string; cookie: string | null } {
    const known = cookiesOf(request).get(PRE_SESSION_COOKIE);
    if (known && /^[\w-]{43}$/.test(known)) return { token: known, cookie: null };
    const token = randomBytes(32).toString("base64url");
    return { token, cookie: setCookie(PRE_SESSION_COOKIE, token, { secure: overTls(request), path: "/console" }) };
  }
  const preSessionOk = (request: Request, form: URLSearchParams) =>
    sameSecret(cookiesOf(request).get(PRE_SESSION_COOKIE), sentCsrf(request, form));

  const withCookie = (r: Response, cookie: string | null) => {
    if (cookie) r.headers.append("set-cookie", cookie);
    return r;
  };

  async function signedInResponse(request: Request, token: string, next: string): Promise<Response> {
    const secure = overTls(request);
    return redirect(safeNext(next), 303, [
      setCookie(SESSION_COOKIE, token, { secure }),
      setCookie(PRE_SESSION_COOKIE, "", { secure, path: "/console", maxAgeS: 0 }),
    ]);
  }

  function visibleTenantList(v: Visitor): Promise<string[]> | string[] {
    const visible = visibleTenants(v.principal);
    if (visible !== "all") return [...visible].sort();
    return storage.resources.list({ kind: "tenants", limit: 500 }).then((rows) => rows.map((r) => r.name));
  }

  return {
    deps,
    storage,
    auth,
    chromeFor,
    html,
    notFound,
    refused,
    unavailable,
    visitor,
    guarded,
    signedIn,
    preSession,
    preSessionOk,
    withCookie,
    signedInResponse,
    visibleTenantList,
  };
}

export type ConsoleKit = ReturnType<typeof consoleKit>;
