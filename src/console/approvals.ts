import { Elysia } from "elysia";
import { type ApprovalItem, ApprovalsPage, type ApprovalsView } from "../../web/index.ts";
import { canAccess, visibleTenants } from "../api/auth.ts";
import { isId } from "../core/ids.ts";
import { summarize } from "../events/envelope.ts";
import { AppError, isAppError } from "../errors/index.ts";
import type { ApprovalRow } from "../store/index.ts";
import { sameSecret } from "./auth.ts";
import { redirect } from "./headers.ts";
import { type ConsoleKit, formOf, iso, PAGE, queryString, sentCsrf, type Visitor } from "./kit.ts";

const text = (v: unknown): string =>
  typeof v === "string" ? v : v === null || v === undefined ? "" : JSON.stringify(v);

/** "dispatch to crm", "tool.call refund". */
export function actionText(action: Record<string, unknown>): string {
  if (action.kind === "dispatch") return `dispatch to ${text(action.target)}`;
  if (action.kind === "tool.call") return `tool.call ${text(action.tool)}`;
  return Object.entries(action)
    .map(([k, x]) => `${k}: ${text(x)}`)
    .join(", ");
}

/** The rule that asked, as people number rules (from 1), as `agentowl approvals show` says it. */
export function ruleText(p: Record<string, unknown>): string {
  const rule = typeof p.rule === "number" ? `, rule #${p.rule + 1}${p.rule_name ? ` ${text(p.rule_name)}` : ""}` : "";
  return `${p.global ? "global " : ""}policy ${text(p.name)} v${text(p.version)}${rule}${p.reason ? `: ${text(p.reason)}` : ""}`;
}

/** "3 h 12 min left", "40 s left", "expired". */
export function timeLeft(ms: number): string {
  if (ms <= 0) return "expired";
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s} s left`;
  const min = Math.ceil(s / 60);
  if (min < 60) return `${min} min left`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${min % 60} min left`;
  return `${Math.floor(h / 24)} days left`;
}

const person = (v: unknown): string => {
  const p = Array.isArray(v) ? v[0] : v;
  if (!p || typeof p !== "object") return text(p);
  const { name, address } = p as { name?: unknown; address?: unknown };
  return name ? `${text(name)} <${text(address)}>` : text(address);
};

/**
 * /console/approvals (docs/console.md#approvals): the queue with its context, approve or deny
 * (a denial needs a reason) through the approvals store as /v1/approvals decides, as the user.
 */
export function approvalsRoutes(kit: ConsoleKit) {
  const { storage, signedIn, notFound, refused, html, chromeFor } = kit;
  const clock = kit.deps.clock;

  async function item(a: ApprovalRow): Promise<ApprovalItem> {
    const stored = a.eventId ? await storage.events.get(a.eventId) : null;
    const e = stored?.envelope;
    const data = (e?.data ?? {}) as Record<string, unknown>;
    const email = e?.channel === "email";
    return {
      id: a.id,
      tenant: a.tenant,
      state: a.state,
      action: actionText(a.action),
      rule: ruleText(a.policy),
      event: e
        ? {
            id: e.id,
            type: e.type,
            sender: email || e.channel === "sms" ? person(data.from) : null,
            subject: email ? text(data.subject) : null,
            summary: summarize(e),
          }
        : null,
      expiresAt: iso(a.expiresAt),
      timeLeft: timeLeft(a.expiresAt - clock.now()),
      onExpiry: a.onExpiry,
      decidedBy: a.decidedBy,
      decidedAt: a.decidedAt === null ? null : iso(a.decidedAt),
      reason: a.reason,
    };
  }

  async function page(v: Visitor, url: URL, message: ApprovalsView["message"], status = 200) {
    const q = url.searchParams;
    const pendingBefore = q.get("pending_before") ?? "";
    const before = q.get("before") ?? "";
    for (const c of [pendingBefore, before])
      if (c && !isId(c, "apr")) throw new AppError("invalid_input", "a cursor must be an approval id");
    const visible = visibleTenants(v.principal);
    const tenants = visible === "all" ? undefined : visible;
    // Decided ones: every state but pending, newest first; a page may show fewer than PAGE.
    const [pending, all] = await Promise.all([
      storage.approvals.list({ tenants, state: "pending", before: pendingBefore || undefined, limit: PAGE + 1 }),
      storage.approvals.list({ tenants, before: before || undefined, limit: PAGE + 1 }),
    ]);
    const shownPending = pending.slice(0, PAGE);
    const shownAll = all.slice(0, PAGE);
    return html(
      ApprovalsPage({
        chrome: chromeFor(v, "approvals"),
        view: {
          pending: await Promise.all(shownPending.map(item)),
          decided: await Promise.all(shownAll.filter((a) => a.state !== "pending").map(item)),
          pendingOlder:
            pending.length > PAGE
              ? `/console/approvals${queryString({ pending_before: shownPending.at(-1)!.id, before })}`
              : null,
          decidedOlder:
            all.length > PAGE
              ? `/console/approvals${queryString({ pending_before: pendingBefore, before: shownAll.at(-1)!.id })}`
              : null,
          newest: pendingBefore || before ? "/console/approvals" : null,
          message,
        },
      }),
      status,
    );
  }

  const decide = (approve: boolean) =>
    signedIn(async (v, { request, params }: { request: Request; params: { id: string } }) => {
      const form = await formOf(request);
      if (!sameSecret(v.session.csrf, sentCsrf(request, form)))
        return refused(v, "The request carried no valid CSRF token.");
      const a = isId(params.id, "apr") ? await storage.approvals.get(params.id) : null;
      if (!a || !canAccess(v.principal, a.tenant, "read")) return notFound(v);
      if (!canAccess(v.principal, a.tenant, "write")) return refused(v, `You may only read tenant ${a.tenant}.`);
      const back = new URL("/console/approvals", request.url);
      const reason = (form.get("reason") ?? "").trim();
      if (reason.length > 1000)
        return page(v, back, { text: "A reason has at most 1,000 characters.", kind: "error" }, 422);
      if (!approve && !reason)
        return page(
          v,
          back,
          { text: "A denial needs a reason: say why in the field beside Deny.", kind: "error" },
          422,
        );
      try {
        await storage.approvals.decide(a.id, { approve, reason: reason || null, actor: v.principal.name });
      } catch (e) {
        if (isAppError(e) && e.kind === "conflict") return page(v, back, { text: e.detail, kind: "error" }, 409);
        throw e;
      }
      return redirect("/console/approvals", 303);
    });

  return new Elysia({ name: "console-approvals", normalize: false, detail: { hide: true } })
    .get(
      "/console/approvals",
      signedIn(async (v, { request }) => page(v, new URL(request.url), null)),
    )
    .post("/console/approvals/:id/approve", decide(true), { parse: "none" })
    .post("/console/approvals/:id/deny", decide(false), { parse: "none" });
}
