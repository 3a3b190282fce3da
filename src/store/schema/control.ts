import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/**
 * Desired state (docs/desired-state.md): every control-plane resource is one row, addressed by
 * (tenant, kind, name). Tenants themselves are rows of kind "tenants" whose tenant is their own
 * name. `spec` is the validated document (src/control/resources/specs.ts); `resource_version` starts at 1
 * and grows by one on every change: it is the ETag and the If-Match precondition.
 */
export const resources = sqliteTable(
  "resources",
  {
    tenant: text("tenant").notNull(),
    kind: text("kind").notNull(),
    name: text("name").notNull(),
    spec: text("spec", { mode: "json" }).notNull(),
    resourceVersion: integer("resource_version").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.kind, t.name] }), index("resources_kind").on(t.kind, t.name)],
);

/** Every version of every resource, including deletions: policy history, console diffs, audit. */
export const resourceHistory = sqliteTable(
  "resource_history",
  {
    tenant: text("tenant").notNull(),
    kind: text("kind").notNull(),
    name: text("name").notNull(),
    resourceVersion: integer("resource_version").notNull(),
    op: text("op", { enum: ["create", "update", "delete"] }).notNull(),
    /** The spec after the change; for a delete, the spec that was deleted. */
    spec: text("spec", { mode: "json" }).notNull(),
    actor: text("actor").notNull(),
    changedAt: integer("changed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.kind, t.name, t.resourceVersion] })],
);

/**
 * API tokens (docs/api.md): only a SHA-256 of the token is stored; the token itself is shown once.
 * Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
 */
export const tokens = sqliteTable(
  "tokens",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    hash: text("hash").notNull().unique(),
    scopes: text("scopes", { mode: "json" }).$type<string[]>().notNull(),
    createdAt: integer("created_at").notNull(),
    createdBy: text("created_by").notNull(),
    expiresAt: integer("expires_at"),
    revokedAt: integer("revoked_at"),
  },
  (t) => [index("tokens_created").on(t.createdAt)],
);
