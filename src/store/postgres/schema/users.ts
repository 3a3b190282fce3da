import { bigint, index, jsonb, pgTable, text } from "drizzle-orm/pg-core";

/**
 * Console users (docs/console.md#users-and-sign-in): an argon2id hash of the password, never the
 * password; the lockout's state (consecutive failures, locked until, how many locks in a row) is
 * the user's row so that it survives a restart and is shared by every request.
 */
export const users = pgTable("users", {
  id: text("id").primaryKey(),
  /** Lower-case, 1–64 characters of [a-z0-9._-]. */
  username: text("username").notNull().unique(),
  passwordHash: text("password_hash").notNull(),
  role: text("role", { enum: ["admin", "member"] }).notNull(),
  /** The tenants a member works in; empty for an admin (who works in every one). */
  tenants: jsonb("tenants").$type<string[]>().notNull(),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
  updatedAt: bigint("updated_at", { mode: "number" }).notNull(),
  failedCount: bigint("failed_count", { mode: "number" }).notNull().default(0),
  lockedUntil: bigint("locked_until", { mode: "number" }),
  lockLevel: bigint("lock_level", { mode: "number" }).notNull().default(0),
});

/**
 * Console sessions: the id is the SHA-256 (hex) of the cookie's token, so a reader of the database
 * cannot sign in with what it finds there. `expires_at` is the absolute end; the idle end is
 * `last_seen_at` plus the configured idle time.
 */
export const consoleSessions = pgTable(
  "console_sessions",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    csrf: text("csrf").notNull(),
    createdAt: bigint("created_at", { mode: "number" }).notNull(),
    lastSeenAt: bigint("last_seen_at", { mode: "number" }).notNull(),
    expiresAt: bigint("expires_at", { mode: "number" }).notNull(),
    revokedAt: bigint("revoked_at", { mode: "number" }),
  },
  (t) => [index("console_sessions_user").on(t.userId), index("console_sessions_expires").on(t.expiresAt)],
);
