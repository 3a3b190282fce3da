import { bigint, index, jsonb, pgTable, text } from "drizzle-orm/pg-core";
import { APPROVAL_STATES } from "../../contract.ts";

/**
 * Actions parked by a `require_approval` decision (docs/desired-state.md#policies) until a person approves or denies
 * them, or they expire with their declared outcome. States: pending → approved | denied | expired.
 */
export { APPROVAL_STATES };

export const approvals = pgTable(
  "approvals",
  {
    id: text("id").primaryKey(),
    tenant: text("tenant").notNull(),
    eventId: text("event_id"),
    /** What waits: `{kind: "dispatch", target}` or `{kind: "tool.call", tool, args}`. */
    action: jsonb("action").$type<Record<string, unknown>>().notNull(),
    /** The decision that parked it: policy name, version, rule, reason. */
    policy: jsonb("policy").$type<Record<string, unknown>>().notNull(),
    state: text("state", { enum: APPROVAL_STATES }).notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    expiresAt: bigint("expires_at", { mode: "number" }).notNull(),
    /** What an expired approval becomes: its action is then approved or denied. */
    onExpiry: text("on_expiry", { enum: ["approve", "deny"] }).notNull(),
    decidedBy: text("decided_by"),
    decidedAt: bigint("decided_at", { mode: "number" }),
    reason: text("reason"),
  },
  (t) => [index("approvals_tenant").on(t.tenant, t.id), index("approvals_pending").on(t.expiresAt)],
);
