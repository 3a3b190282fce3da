import { Elysia } from "elysia";
import { ErrorPage, FirstAdminPage, InboxList, InboxPage, SignInPage } from "../../web/index.ts";
import { canAccess } from "../api/auth.ts";
import { isId } from "../core/ids.ts";
import { AppError, isAppError } from "../errors/index.ts";
import { CHANNELS, EVENT_TYPES } from "../events/envelope.ts";
import { ASSET_BY_PATH } from "./assets.ts";
import { configRoutes } from "./config.ts";
import { dashboardRoutes } from "./dashboard.ts";
import { overTls, SESSION_COOKIE, safeNext, sameSecret, setCookie } from "./auth.ts";
import {
  DAY_MS,
  type ConsoleDeps,
  consoleKit,
  formOf,
  iso,
  NAME,
  PAGE,
  queryString,
  sentCsrf,
  type WithServer,
} from "./kit.ts";
import { redirect, SECURITY_HEADERS } from "./headers.ts";
import { inboxAccess, mailRoutes } from "./mail.ts";
import { eventsListRoutes } from "./events-list.ts";
import { fragment, liveRoutes, wantsFragment } from "./live.ts";
import { eventRow } from "./views.ts";
import { actionsRoutes, eventPage } from "./actions.ts";
import { agentsRoutes } from "./agents.ts";
import { approvalsRoutes } from "./approvals.ts";
import { auditRoutes } from "./audit.ts";
import { logsRoutes } from "./logs.ts";
import { tokensRoutes } from "./tokens.ts";
import { vaultRoutes } from "./vault.ts";

export type { ConsoleAuth, ConsoleSession, ConsoleUser, SignInResult } from "./auth.ts";
export { PRE_SESSION_COOKIE, safeNext, SESSION_COOKIE } from "./auth.ts";
export { CSP, SECURITY_HEADERS } from "./headers.ts";
export { ASSET_PATHS } from "./assets.ts";
export { type ConsoleDeps, type ConsoleKit, consoleKit } from "./kit.ts";
export { DASHBOARD_CACHE_MS, type DiskUsage, dataDirUsage } from "./dashboard.ts";
export { LIVE_DEFAULTS, LiveHub, type LiveOptions } from "./live.ts";

/**
 * The web console (docs/console.md) on the one HTTP app: `/console`, the per-tenant inbox under
 * `/t/`, and `/` → `/console`. Every response carries the security headers; every POST needs the
 * session's CSRF token (the sign-in forms: the pre-session one); a tenant or event the user may not
 * see is a 404, as in the API.
 */
export function consoleRoutes(deps: ConsoleDeps) {
  const { storage, auth, clock } = deps;
  const kit = consoleKit(deps);
  const {
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
  } = kit;
  return (
    // Pages, not API: left out of /v1/openapi.json.
    new Elysia({ name: "console", normalize: false, detail: { hide: true } })
      .get("/", () => redirect("/console", 302))
      .use(configRoutes(kit))
      .get(
        "/console/assets/:file",
        guarded(async ({ request }) => {
          const asset = ASSET_BY_PATH.get(new URL(request.url).pathname);
          if (!asset) return notFound(null);
          return new Response(asset.body, {
            headers: {
              ...SECURITY_HEADERS,
              "content-type": asset.type,
              "cache-control": "public, max-age=31536000, immutable",
            },
          });
        }),
      )
      // ---- signing in -------------------------------------------------------------------
      .get(
        "/console/sign-in",
        guarded(async ({ request }) => {
          if (!auth) return unavailable();
          const next = safeNext(new URL(request.url).searchParams.get("next"));
          if (await visitor(request)) return redirect(next, 303);
          const pre = preSession(request);
          const firstAdmin = (await auth.count()) === 0;
          return withCookie(
            await html(SignInPage({ chrome: chromeFor(null), csrf: pre.token, next, firstAdmin })),
            pre.cookie,
          );
        }),
      )
      .post(
        "/console/sign-in",
        guarded(async ({ request, server }: WithServer) => {
          if (!auth) return unavailable();
          const form = await formOf(request);
          if (!preSessionOk(request, form)) return refused(null, "The form expired: open the sign-in page again.");
          const username = (form.get("username") ?? "").trim();
          const password = form.get("password") ?? "";
          const next = safeNext(form.get("next"));
          const remote = server?.requestIP(request)?.address ?? "unknown";
          const result = await auth.signIn(username, password, remote);
          if (result.ok) return signedInResponse(request, result.token, next);
          const pre = preSession(request);
          const again = (message: string, status: number, extra: Record<string, string> = {}) =>
            html(SignInPage({ chrome: chromeFor(null), csrf: pre.token, next, username, message }), status, extra);
          if (result.reason === "locked") {
            const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
            const at = iso(clock.now() + seconds * 1000)
              .replace("T", " ")
              .replace(/\.\d+Z$/, " UTC");
            const wait = seconds < 120 ? `${seconds} seconds` : `${Math.ceil(seconds / 60)} minutes`;
            return again(`Too many failed sign-ins: this user is locked. Try again in ${wait} (after ${at}).`, 429, {
              "retry-after": String(seconds),
            });
          }
          return again("Wrong username or password.", 401);
        }),
        { parse: "none" },
      )
      .post(
        "/console/sign-out",
        guarded(async ({ request }) => {
          const v = await visitor(request);
          if (!v) return redirect("/console/sign-in", 303);
          const form = await formOf(request);
          if (!sameSecret(v.session.csrf, sentCsrf(request, form)))
            return refused(v, "The request carried no valid CSRF token.");
          await auth!.signOut(v.token, `user:${v.session.user.username}`);
          deps.live?.endSession(v.session.id);
          return redirect("/console/sign-in", 303, [
            setCookie(SESSION_COOKIE, "", { secure: overTls(request), maxAgeS: 0 }),
          ]);
        }),
        { parse: "none" },
      )
      .get(
        "/console/first-admin",
        guarded(async ({ request }) => {
          if (!auth) return unavailable();
          if ((await auth.count()) > 0) return notFound(await visitor(request));
          const pre = preSession(request);
          return withCookie(
            await html(
              FirstAdminPage({ chrome: chromeFor(null), csrf: pre.token, bootstrapConfigured: !!deps.bootstrapToken }),
            ),
            pre.cookie,
          );
        }),
      )
      .post(
        "/console/first-admin",
        guarded(async ({ request, server }: WithServer) => {
          if (!auth) return unavailable();
          const form = await formOf(request);
          if (!preSessionOk(request, form)) return refused(null, "The form expired: open this page again.");
          if ((await auth.count()) > 0) return notFound(null);
          const username = (form.get("username") ?? "").trim();
          const password = form.get("password") ?? "";
          const pre = preSession(request);
          const again = (message: string, status: number) =>
            html(
              FirstAdminPage({
                chrome: chromeFor(null),
                csrf: pre.token,
                username,
                message,
                bootstrapConfigured: !!deps.bootstrapToken,
              }),
              status,
            );
          if (!username) return again("Choose a username.", 422);
          if (password !== (form.get("password2") ?? "")) return again("The two passwords differ.", 422);
          try {
            await auth.createFirstAdmin(form.get("bootstrap_token") ?? "", username, password);
          } catch (e) {
            if (isAppError(e) && e.kind === "forbidden") return again("The bootstrap token is not right.", 403);
            if (isAppError(e) && e.kind === "conflict") return notFound(null);
            if (isAppError(e) && e.kind === "invalid_input") return again(e.detail, 422);
            throw e;
          }
          const result = await auth.signIn(username, password, server?.requestIP(request)?.address ?? "unknown");
          return result.ok ? signedInResponse(request, result.token, "/console") : redirect("/console/sign-in", 303);
        }),
        { parse: "none" },
      )
      // ---- behind sign-in ---------------------------------------------------------------
      .use(dashboardRoutes(kit))
      .use(eventsListRoutes(kit))
      .get(
        "/console/events/:id",
        signedIn(async (v, { params }: { request: Request; params: { id: string } }) => {
          const event = isId(params.id, "evt") ? await storage.events.get(params.id) : null;
          if (!event || !canAccess(v.principal, event.tenant, "read")) return notFound(v);
          return eventPage(kit, v, event);
        }),
      )
      .get(
        "/t/:tenant/inbox",
        inboxAccess(kit)(async (v, { request, params }: { request: Request; params: { tenant: string } }) => {
          const tenant = params.tenant;
          const before = new URL(request.url).searchParams.get("before") ?? "";
          if (before && !isId(before, "evt")) throw new AppError("invalid_input", "before must be an event id");
          const rows = await storage.events.list({
            tenants: [tenant],
            channel: "email",
            since: clock.now() - (deps.inboxWindowMs ?? DAY_MS),
            before: before || undefined,
            limit: PAGE + 1,
          });
          const shown = rows.slice(0, PAGE);
          const base = `/t/${tenant}/inbox`;
          const list = {
            tenant,
            rows: shown.map((r) => eventRow(r.envelope)),
            newest: before ? base : null,
            older: rows.length > PAGE ? `${base}?before=${shown.at(-1)!.envelope.id}` : null,
            live: before ? null : base,
          };
          if (wantsFragment(request)) return fragment(InboxList(list));
          return html(InboxPage({ chrome: chromeFor(v, "inbox"), windowMs: deps.inboxWindowMs, ...list }), 200, {
            vary: "HX-Request",
          });
        }),
      )
      .use(actionsRoutes(kit))
      .use(approvalsRoutes(kit))
      .use(agentsRoutes(kit))
      .use(tokensRoutes(kit))
      .use(vaultRoutes(kit))
      .use(auditRoutes(kit))
      .use(logsRoutes(kit))
      .use(mailRoutes(kit))
      .use(liveRoutes(kit, deps.live ?? null))
      // Anything else under the console's prefixes: its 404 page, with its headers.
      .all(
        "/console/*",
        guarded(async ({ request }) => notFound(await visitor(request))),
        { parse: "none" },
      )
      .all(
        "/t/*",
        guarded(async ({ request }) => notFound(await visitor(request))),
        { parse: "none" },
      )
  );
}
