import { bigint, customType, pgTable, primaryKey, text } from "drizzle-orm/pg-core";

/** Sealed bytes: bytea, read back as a Uint8Array. */
const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({ dataType: () => "bytea" });

/**
 * Vault secrets (docs/api.md#vault): one row per secret version, sealed (src/vault/crypto.ts). The
 * current version has no `expires_at`; a superseded one stays valid until its `expires_at` (the
 * rotation's grace period), so receivers can move to the new value without a gap.
 */
export const secrets = pgTable(
  "secrets",
  {
    tenant: text("tenant").notNull(),
    name: text("name").notNull(),
    version: bigint("version", { mode: "number" }).notNull(),
    masterKeyId: text("master_key_id").notNull(),
    wrappedKey: bytea("wrapped_key").notNull(),
    sealedValue: bytea("sealed_value").notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    createdBy: text("created_by").notNull(),
    expiresAt: bigint("expires_at", { mode: "number" }),
    /** How often the secret should be rotated (ms), for reminders; null: no schedule. */
    rotationPeriodMs: bigint("rotation_period_ms", { mode: "number" }),
    /**
     * What the value looks like, noted when it is set (never the value): `whsec` for a Standard
     * Webhooks secret, `opaque` otherwise; null for versions set before this was noted. An
     * endpoint's signing_secret must be `whsec`.
     */
    format: text("format", { enum: ["whsec", "opaque"] }),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.name, t.version] })],
);
