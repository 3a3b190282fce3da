import { asc, eq, gt, sql } from "drizzle-orm";
import type { NewUser, UserPatch, UserRecord, UserStore } from "../contract.ts";
import { newUserRow } from "../new-rows.ts";
import { consoleSessions, users } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

same<Same<UserRecord, typeof users.$inferSelect>>(true);

/** Console users' rows (src/store/schema/users.ts); hashing and lockout policy are src/users/'s. */
export class SqliteUsers implements UserStore {
  constructor(private readonly db: Db) {}

  private byName(db: Db, username: string): UserRecord | null {
    return db.select().from(users).where(eq(users.username, username)).get() ?? null;
  }

  private counted(db: Db): number {
    return db.select({ n: sql<number>`count(*)` }).from(users).get()?.n ?? 0;
  }

  createTx(tx: SqliteTx, u: NewUser): UserRecord {
    const row = newUserRow(u, tx.now, this.byName(tx.db, u.username) != null);
    tx.db.insert(users).values(row).run();
    return row;
  }

  getTx(tx: SqliteTx, username: string): UserRecord | null {
    return this.byName(tx.db, username);
  }

  async get(username: string): Promise<UserRecord | null> {
    return this.byName(this.db, username);
  }

  async getById(id: string): Promise<UserRecord | null> {
    return this.db.select().from(users).where(eq(users.id, id)).get() ?? null;
  }

  async list(q: { after?: string; limit: number }): Promise<UserRecord[]> {
    return this.db
      .select()
      .from(users)
      .where(q.after !== undefined ? gt(users.username, q.after) : undefined)
      .orderBy(asc(users.username))
      .limit(q.limit)
      .all();
  }

  countTx(tx: SqliteTx): number {
    return this.counted(tx.db);
  }

  async count(): Promise<number> {
    return this.counted(this.db);
  }

  updateTx(tx: SqliteTx, username: string, patch: UserPatch): UserRecord | null {
    return (
      tx.db
        .update(users)
        .set({ ...patch, updatedAt: tx.now })
        .where(eq(users.username, username))
        .returning()
        .get() ?? null
    );
  }

  deleteTx(tx: SqliteTx, username: string): UserRecord | null {
    const row = this.byName(tx.db, username);
    if (!row) return null;
    // Explicit, not only the foreign key's cascade: a session must not outlive its user on any driver.
    tx.db.delete(consoleSessions).where(eq(consoleSessions.userId, row.id)).run();
    tx.db.delete(users).where(eq(users.id, row.id)).run();
    return row;
  }
}
