import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/**
 * Console users (docs/console.md#users-and-sign-in): an argon2id hash of the password, never the
 * password; the lockout's state (consecutive failures, locked until, how many locks in a row) is
 * the user's row so that it survives a restart and is shared by every request.
 */
export const users = sqliteTable("users", {
  id: text("id").primaryKey(),
  /** Lower-case, 1–64 characters of [a-z0-9._-]. */
  username: text("username").notNull().unique(),
  passwordHash: text("password_hash").notNull(),
  role: text("role", { enum: ["admin", "member"] }).notNull(),
  /** The tenants a member works in; empty for an admin (who works in every one). */
  tenants: text("tenants", { mode: "json" }).$type<string[]>().notNull(),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
  failedCount: integer("failed_count").notNull().default(0),
  lockedUntil: integer("locked_until"),
  lockLevel: integer("lock_level").notNull().default(0),
});

/**
 * Console sessions: the id is the SHA-256 (hex) of the cookie's token, so a reader of the database
 * cannot sign in with what it finds there. `expires_at` is the absolute end; the idle end is
 * `last_seen_at` plus the configured idle time.
 */
export const consoleSessions = sqliteTable(
  "console_sessions",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    csrf: text("csrf").notNull(),
    createdAt: integer("created_at").notNull(),
    lastSeenAt: integer("last_seen_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    revokedAt: integer("revoked_at"),
  },
  (t) => [index("console_sessions_user").on(t.userId), index("console_sessions_expires").on(t.expiresAt)],
);
