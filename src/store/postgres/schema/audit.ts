import { bigint, bigserial, index, pgTable, text } from "drizzle-orm/pg-core";

/** The append-only, hash-chained audit log (src/store/audit-chain.ts). Rows are never updated or deleted. */
export const auditLog = pgTable(
  "audit_log",
  {
    seq: bigserial("seq", { mode: "number" }).primaryKey(),
    at: bigint("at", { mode: "number" }).notNull(),
    actor: text("actor").notNull(),
    tenant: text("tenant"),
    action: text("action").notNull(),
    target: text("target"),
    decision: text("decision"),
    /** The canonical JSON that was hashed, byte for byte (text, not jsonb, which would rewrite it). */
    details: text("details").notNull(),
    prevHash: text("prev_hash").notNull(),
    hash: text("hash").notNull(),
  },
  (t) => [index("audit_tenant").on(t.tenant, t.seq), index("audit_action").on(t.action, t.seq)],
);
