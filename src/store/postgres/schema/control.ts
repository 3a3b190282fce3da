import { bigint, index, jsonb, pgTable, primaryKey, text } from "drizzle-orm/pg-core";

/**
 * Desired state (docs/desired-state.md): every control-plane resource is one row, addressed by
 * (tenant, kind, name). Tenants themselves are rows of kind "tenants" whose tenant is their own
 * name. `spec` is the validated document (src/control/resources/specs.ts); `resource_version` starts at 1
 * and grows by one on every change: it is the ETag and the If-Match precondition.
 */
export const resources = pgTable(
  "resources",
  {
    tenant: text("tenant").notNull(),
    kind: text("kind").notNull(),
    name: text("name").notNull(),
    spec: jsonb("spec").notNull(),
    resourceVersion: bigint("resource_version", { mode: "number" }).notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.kind, t.name] }), index("resources_kind").on(t.kind, t.name)],
);

/** Every version of every resource, including deletions: policy history, console diffs, audit. */
export const resourceHistory = pgTable(
  "resource_history",
  {
    tenant: text("tenant").notNull(),
    kind: text("kind").notNull(),
    name: text("name").notNull(),
    resourceVersion: bigint("resource_version", { mode: "number" }).notNull(),
    op: text("op", { enum: ["create", "update", "delete"] }).notNull(),
    /** The spec after the change; for a delete, the spec that was deleted. */
    spec: jsonb("spec").notNull(),
    actor: text("actor").notNull(),
    changedAt: bigint("changed_at", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.kind, t.name, t.resourceVersion] })],
);

/**
 * API tokens (docs/api.md): only a SHA-256 of the token is stored; the token itself is shown once.
 * Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
 */
export const tokens = pgTable(
  "tokens",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    hash: text("hash").notNull().unique(),
    scopes: jsonb("scopes").$type<string[]>().notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    createdBy: text("created_by").notNull(),
    expiresAt: bigint("expires_at", { mode: "number" }),
    revokedAt: bigint("revoked_at", { mode: "number" }),
  },
  (t) => [index("tokens_created").on(t.createdAt)],
);

/**
 * Who runs each piece of work that must run on one node at a time, until when (src/store/postgres/leases.ts).
 * PostgreSQL only: on SQLite one process holds the data dir, and its leases live in memory.
 */
export const singletonLeases = pgTable("singleton_leases", {
  name: text("name").primaryKey(),
  holder: text("holder").notNull(),
  expiresAt: bigint("expires_at", { mode: "number" }).notNull(),
});
