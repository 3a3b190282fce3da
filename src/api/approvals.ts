import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { isId } from "../core/ids.ts";
import { AppError } from "../errors/index.ts";
import { summarize } from "../events/envelope.ts";
import type { ApprovalRow, ApprovalStore, EventStore, TokenStore } from "../store/index.ts";
import { canAccess, type Principal, tenantsFor } from "./auth.ts";
import { authenticated, pageOf, readPage } from "./http.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const present = (a: ApprovalRow) => ({
  id: a.id,
  tenant: a.tenant,
  event_id: a.eventId,
  action: a.action,
  policy: a.policy,
  state: a.state,
  created_at: iso(a.createdAt),
  expires_at: iso(a.expiresAt),
  on_expiry: a.onExpiry,
  decided_by: a.decidedBy,
  decided_at: iso(a.decidedAt),
  reason: a.reason,
});

const Decision = t.Object(
  { reason: t.Optional(t.String({ minLength: 1, maxLength: 1000 })) },
  { additionalProperties: false },
);

/** /v1/approvals: parked actions; deciding needs write access to the approval's tenant. */
export function approvalRoutes(store: ApprovalStore, events: EventStore, tokens: TokenStore, clock: Clock) {
  /** The approval, with what it is about: the event in one line, and the endpoint. */
  const shown = async (a: ApprovalRow) => {
    const event = a.eventId ? await events.get(a.eventId) : null;
    return {
      ...present(a),
      event: event && {
        id: a.eventId,
        type: event.envelope.type,
        channel: event.envelope.channel,
        received_at: event.envelope.received_at,
        summary: summarize(event.envelope),
      },
    };
  };
  const visible = async (p: Principal, id: string, access: "read" | "write"): Promise<ApprovalRow> => {
    const a = isId(id, "apr") ? await store.get(id) : null;
    if (!a || !canAccess(p, a.tenant, "read")) throw new AppError("not_found", "not found");
    if (access === "write" && !canAccess(p, a.tenant, "write"))
      throw new AppError("forbidden", `this token may only read tenant ${a.tenant}`);
    return a;
  };
  const decide = async (p: Principal, id: string, approve: boolean, body: { reason?: string }) => {
    const reason = body.reason;
    if (!approve && !reason)
      throw new AppError("invalid_input", "a denial needs a reason", {
        errors: [{ field: "/reason", message: "required when denying" }],
      });
    return shown(await store.decide(id, { approve, reason: reason ?? null, actor: `token:${p.tokenId}` }));
  };
  return (
    new Elysia({ normalize: false })
      .use(authenticated(tokens, clock))
      // Before the body is validated: an approval of another tenant is 404 whatever is sent.
      .derive({ as: "local" }, async ({ principal, params, request }) => {
        const id = (params as Record<string, string | undefined> | undefined)?.id;
        return id === undefined
          ? {}
          : { approval: await visible(principal, id, request.method === "GET" ? "read" : "write") };
      })
      // After authorization: a decision is only ever made on a body that is a JSON object.
      .onTransform({ as: "local" }, ({ body, request }) => {
        if (request.method === "POST" && (body === null || typeof body !== "object" || Array.isArray(body))) {
          throw new AppError("invalid_input", 'the body must be a JSON object: {} or {"reason": "..."}');
        }
      })
      .get("/approvals", async ({ principal, query }) => {
        const q = query as Record<string, string | undefined>;
        const tenants = tenantsFor(principal, q.tenant);
        const page = readPage(q);
        const rows = await store.list({ tenants, state: q.state, before: page.after, limit: page.limit + 1 });
        return pageOf(await Promise.all(rows.map(shown)), page.limit, (a) => a.id);
      })
      .get("/approvals/:id", ({ approval }) => shown(approval!))
      // The body is required ({} when there is no reason): a malformed one must never count as a decision.
      .post("/approvals/:id/approve", ({ principal, params, body }) => decide(principal, params.id, true, body), {
        body: Decision,
        parse: "json",
      })
      .post("/approvals/:id/deny", ({ principal, params, body }) => decide(principal, params.id, false, body), {
        body: Decision,
        parse: "json",
      })
  );
}
