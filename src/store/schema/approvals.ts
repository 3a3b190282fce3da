import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { APPROVAL_STATES } from "../contract.ts";

/**
 * Actions parked by a `require_approval` decision (docs/desired-state.md#policies) until a person approves or denies
 * them, or they expire with their declared outcome. States: pending → approved | denied | expired.
 */
export { APPROVAL_STATES };

export const approvals = sqliteTable(
  "approvals",
  {
    id: text("id").primaryKey(),
    tenant: text("tenant").notNull(),
    eventId: text("event_id"),
    /** What waits: `{kind: "dispatch", target}` or `{kind: "tool.call", tool, args}`. */
    action: text("action", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    /** The decision that parked it: policy name, version, rule, reason. */
    policy: text("policy", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    state: text("state", { enum: APPROVAL_STATES }).notNull(),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    /** What an expired approval becomes: its action is then approved or denied. */
    onExpiry: text("on_expiry", { enum: ["approve", "deny"] }).notNull(),
    decidedBy: text("decided_by"),
    decidedAt: integer("decided_at"),
    reason: text("reason"),
  },
  (t) => [index("approvals_tenant").on(t.tenant, t.id), index("approvals_pending").on(t.expiresAt)],
);
