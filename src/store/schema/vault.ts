import { blob, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/**
 * Vault secrets (docs/api.md#vault): one row per secret version, sealed (src/vault/crypto.ts). The
 * current version has no `expires_at`; a superseded one stays valid until its `expires_at` (the
 * rotation's grace period), so receivers can move to the new value without a gap.
 */
export const secrets = sqliteTable(
  "secrets",
  {
    tenant: text("tenant").notNull(),
    name: text("name").notNull(),
    version: integer("version").notNull(),
    masterKeyId: text("master_key_id").notNull(),
    wrappedKey: blob("wrapped_key", { mode: "buffer" }).notNull(),
    sealedValue: blob("sealed_value", { mode: "buffer" }).notNull(),
    createdAt: integer("created_at").notNull(),
    createdBy: text("created_by").notNull(),
    expiresAt: integer("expires_at"),
    /** How often the secret should be rotated (ms), for reminders; null: no schedule. */
    rotationPeriodMs: integer("rotation_period_ms"),
    /**
     * What the value looks like, noted when it is set (never the value): `whsec` for a Standard
     * Webhooks secret, `opaque` otherwise; null for versions set before this was noted. An
     * endpoint's signing_secret must be `whsec`.
     */
    format: text("format", { enum: ["whsec", "opaque"] }),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.name, t.version] })],
);
