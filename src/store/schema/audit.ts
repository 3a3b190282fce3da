import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** The append-only, hash-chained audit log (src/store/audit-chain.ts). Rows are never updated; only retention deletes, from the start, under a signed checkpoint of what it removed. */
export const auditLog = sqliteTable(
  "audit_log",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    at: integer("at").notNull(),
    actor: text("actor").notNull(),
    tenant: text("tenant"),
    action: text("action").notNull(),
    target: text("target"),
    decision: text("decision"),
    details: text("details", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    prevHash: text("prev_hash").notNull(),
    hash: text("hash").notNull(),
  },
  (t) => [index("audit_tenant").on(t.tenant, t.seq), index("audit_action").on(t.action, t.seq)],
);
