import { Elysia } from "elysia";
import { AuditPage, type AuditView } from "../../web/index.ts";
import { canAccess, isAdmin, visibleTenants } from "../api/auth.ts";
import { AppError } from "../errors/index.ts";
import { sameSecret } from "./auth.ts";
import { redirect } from "./headers.ts";
import { type ConsoleKit, formOf, iso, NAME, PAGE, queryString, sentCsrf } from "./kit.ts";

/** What a verification from the console records: the entry the page reads its status from. */
export const VERIFY_ACTION = "audit.verify";

/**
 * /console/audit (docs/console.md#audit): the log newest first, filtered by tenant, actor and
 * event, keyset-paginated on the entry's seq, through the same query as GET /v1/audit (a member
 * sees its tenants' entries). "Verify now" (an admin's, as GET /v1/audit/verify is) runs the
 * chain's verify, the one `agentowl audit verify` asks for, and records its result as an
 * `audit.verify` entry in the user's name: the page's "last verified" is the newest of those.
 */
export function auditRoutes(kit: ConsoleKit) {
  const { storage, signedIn, notFound, refused, html, chromeFor, visibleTenantList } = kit;

  return new Elysia({ name: "console-audit", normalize: false, detail: { hide: true } })
    .get(
      "/console/audit",
      signedIn(async (v, { request }) => {
        const q = new URL(request.url).searchParams;
        const filters = {
          tenant: q.get("tenant") ?? "",
          actor: (q.get("actor") ?? "").trim(),
          event: (q.get("event") ?? "").trim(),
        };
        const beforeText = q.get("before") ?? "";
        if (filters.tenant && !(NAME.test(filters.tenant) && canAccess(v.principal, filters.tenant, "read")))
          return notFound(v);
        const before = beforeText ? Number(beforeText) : undefined;
        if (before !== undefined && !(Number.isSafeInteger(before) && before >= 1))
          throw new AppError("invalid_input", "before must be an entry's number");
        if (filters.actor.length > 200 || filters.event.length > 200)
          throw new AppError("invalid_input", "a filter has at most 200 characters");
        const visible = visibleTenants(v.principal);
        const [rows, verified, tenants] = await Promise.all([
          storage.audit.list({
            tenants: filters.tenant ? [filters.tenant] : visible === "all" ? undefined : visible,
            actor: filters.actor || undefined,
            event: filters.event || undefined,
            before,
            limit: PAGE + 1,
          }),
          storage.audit.list({ action: VERIFY_ACTION, limit: 1 }),
          visibleTenantList(v),
        ]);
        const shown = rows.slice(0, PAGE);
        const last = verified[0];
        const d = (last?.details ?? {}) as { ok?: unknown; entries?: unknown; problem?: unknown };
        const view: AuditView = {
          filters,
          tenants,
          items: shown.map((e) => ({
            seq: e.seq,
            at: iso(e.at),
            actor: e.actor,
            tenant: e.tenant,
            action: e.action,
            target: e.target,
            decision: e.decision,
            details: e.details === null || e.details === undefined ? "" : JSON.stringify(e.details),
          })),
          newest: before !== undefined ? `/console/audit${queryString(filters)}` : null,
          older:
            rows.length > PAGE
              ? `/console/audit${queryString({ ...filters, before: String(shown.at(-1)!.seq) })}`
              : null,
          verification: last
            ? {
                ok: d.ok === true,
                at: iso(last.at),
                by: last.actor,
                entries: Number(d.entries) || 0,
                problem: typeof d.problem === "string" ? d.problem : null,
              }
            : null,
          canVerify: isAdmin(v.principal),
          message: null,
        };
        return html(AuditPage({ chrome: chromeFor(v, "audit"), view }));
      }),
    )
    .post(
      "/console/audit/verify",
      signedIn(async (v, { request }) => {
        const form = await formOf(request);
        if (!sameSecret(v.session.csrf, sentCsrf(request, form)))
          return refused(v, "The request carried no valid CSRF token.");
        if (!isAdmin(v.principal)) return refused(v, "Only an admin verifies the audit chain.");
        const r = await storage.audit.verify();
        await storage.audit.append({
          actor: v.principal.name,
          action: VERIFY_ACTION,
          decision: r.ok ? "intact" : "broken",
          details: {
            ok: r.ok,
            entries: r.entries,
            head: r.head,
            problem: r.problem,
            first_broken: r.firstBroken,
            keyed: r.keyed,
            checkpoint_seq: r.checkpoint?.seq ?? null,
          },
        });
        return redirect("/console/audit", 303);
      }),
      { parse: "none" },
    );
}
