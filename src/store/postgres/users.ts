import { newId } from "../../core/ids.ts";
import { AppError } from "../../errors/index.ts";
import type { NewUser, SessionRecord, SessionStore, UserPatch, UserRecord, UserStore } from "../contract.ts";
import type { PgCommitter, PgTx } from "./committer.ts";
import { num, numOrNull, type PgDb } from "./db.ts";

const toUser = (r: Record<string, unknown>): UserRecord => ({
  id: r.id as string,
  username: r.username as string,
  passwordHash: r.password_hash as string,
  role: r.role as UserRecord["role"],
  tenants: r.tenants as string[],
  createdAt: num(r.created_at),
  updatedAt: num(r.updated_at),
  failedCount: num(r.failed_count),
  lockedUntil: numOrNull(r.locked_until),
  lockLevel: num(r.lock_level),
});

const toSession = (r: Record<string, unknown>): SessionRecord => ({
  id: r.id as string,
  userId: r.user_id as string,
  csrf: r.csrf as string,
  createdAt: num(r.created_at),
  lastSeenAt: num(r.last_seen_at),
  expiresAt: num(r.expires_at),
  revokedAt: numOrNull(r.revoked_at),
});

/** UserPatch's fields and their columns. */
const PATCH_COLUMNS: Record<keyof UserPatch, string> = {
  passwordHash: "password_hash",
  role: "role",
  tenants: "tenants",
  failedCount: "failed_count",
  lockedUntil: "locked_until",
  lockLevel: "lock_level",
};

/** Console users' rows on PostgreSQL (src/store/sqlite/users.ts is the model). */
export class PgUsers implements UserStore {
  constructor(private readonly db: PgDb) {}

  createTx(tx: PgTx, u: NewUser): UserRecord {
    // Checked first so that a taken name is a conflict, not a failed statement of the whole unit.
    if (this.getTx(tx, u.username)) throw new AppError("conflict", `user ${u.username} exists already`);
    const row: UserRecord = {
      id: newId("usr", tx.now),
      ...u,
      tenants: [...u.tenants],
      createdAt: tx.now,
      updatedAt: tx.now,
      failedCount: 0,
      lockedUntil: null,
      lockLevel: 0,
    };
    tx.conn.defer(
      "INSERT INTO users (id, username, password_hash, role, tenants, created_at, updated_at, failed_count, locked_until, lock_level) " +
        "VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $6, 0, NULL, 0)",
      [row.id, row.username, row.passwordHash, row.role, JSON.stringify(row.tenants), tx.now],
    );
    return row;
  }

  getTx(tx: PgTx, username: string): UserRecord | null {
    const [r] = tx.conn.query("SELECT * FROM users WHERE username = $1", [username]);
    return r ? toUser(r) : null;
  }

  async get(username: string): Promise<UserRecord | null> {
    const [r] = await this.db.read("SELECT * FROM users WHERE username = $1", [username]);
    return r ? toUser(r) : null;
  }

  async getById(id: string): Promise<UserRecord | null> {
    const [r] = await this.db.read("SELECT * FROM users WHERE id = $1", [id]);
    return r ? toUser(r) : null;
  }

  async list(q: { after?: string; limit: number }): Promise<UserRecord[]> {
    const rows =
      q.after !== undefined
        ? await this.db.read("SELECT * FROM users WHERE username > $1 ORDER BY username LIMIT $2", [q.after, q.limit])
        : await this.db.read("SELECT * FROM users ORDER BY username LIMIT $1", [q.limit]);
    return rows.map(toUser);
  }

  countTx(tx: PgTx): number {
    return num(tx.conn.query<{ n: string }>("SELECT count(*) AS n FROM users")[0]!.n);
  }

  async count(): Promise<number> {
    return num((await this.db.read<{ n: string }>("SELECT count(*) AS n FROM users"))[0]!.n);
  }

  updateTx(tx: PgTx, username: string, patch: UserPatch): UserRecord | null {
    const sets = ["updated_at = $2"];
    const params: unknown[] = [username, tx.now];
    for (const [field, column] of Object.entries(PATCH_COLUMNS) as [keyof UserPatch, string][]) {
      if (!(field in patch) || patch[field] === undefined) continue;
      const value = field === "tenants" ? JSON.stringify(patch.tenants) : patch[field];
      params.push(value);
      sets.push(`${column} = $${params.length}${field === "tenants" ? "::text::jsonb" : ""}`);
    }
    const [r] = tx.conn.query(`UPDATE users SET ${sets.join(", ")} WHERE username = $1 RETURNING *`, params);
    return r ? toUser(r) : null;
  }

  deleteTx(tx: PgTx, username: string): UserRecord | null {
    const row = this.getTx(tx, username);
    if (!row) return null;
    // Explicit, not only the foreign key's cascade: a session must not outlive its user on any driver.
    tx.conn.defer("DELETE FROM console_sessions WHERE user_id = $1", [row.id]);
    tx.conn.defer("DELETE FROM users WHERE id = $1", [row.id]);
    return row;
  }
}

/** Console sessions' rows on PostgreSQL (src/store/sqlite/sessions.ts is the model). */
export class PgSessions implements SessionStore {
  constructor(
    private readonly db: PgDb,
    private readonly committer: PgCommitter,
  ) {}

  createTx(tx: PgTx, s: { id: string; userId: string; csrf: string; expiresAt: number }): SessionRecord {
    const row: SessionRecord = { ...s, createdAt: tx.now, lastSeenAt: tx.now, revokedAt: null };
    tx.conn.defer(
      "INSERT INTO console_sessions (id, user_id, csrf, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5)",
      [s.id, s.userId, s.csrf, tx.now, s.expiresAt],
    );
    return row;
  }

  async get(id: string): Promise<SessionRecord | null> {
    const [r] = await this.db.read("SELECT * FROM console_sessions WHERE id = $1", [id]);
    return r ? toSession(r) : null;
  }

  touch(id: string, at: number): Promise<boolean> {
    return this.committer.run(
      (tx) =>
        tx.conn.query(
          "UPDATE console_sessions SET last_seen_at = greatest(last_seen_at, $2) WHERE id = $1 RETURNING id",
          [id, at],
        ).length === 1,
    );
  }

  revokeTx(tx: PgTx, id: string): SessionRecord | null {
    const [r] = tx.conn.query(
      "UPDATE console_sessions SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING *",
      [id, tx.now],
    );
    return r ? toSession(r) : null;
  }

  revokeAllOfUserTx(tx: PgTx, userId: string): number {
    return tx.conn.query(
      "UPDATE console_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
      [userId, tx.now],
    ).length;
  }

  purge(now: number, idleBefore: number): Promise<number> {
    return this.committer.run(
      (tx) =>
        tx.conn.query(
          "DELETE FROM console_sessions WHERE revoked_at IS NOT NULL OR expires_at <= $1 OR last_seen_at <= $2 RETURNING id",
          [now, idleBefore],
        ).length,
    );
  }
}
