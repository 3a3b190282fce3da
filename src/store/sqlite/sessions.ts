import { and, eq, isNotNull, isNull, lte, or, sql } from "drizzle-orm";
import type { SessionRecord, SessionStore } from "../contract.ts";
import { consoleSessions } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

same<Same<SessionRecord, typeof consoleSessions.$inferSelect>>(true);

/** Console sessions' rows (src/store/schema/users.ts); expiry policy is src/users/'s. */
export class SqliteSessions implements SessionStore {
  constructor(
    private readonly db: Db,
    private readonly committer: SqliteCommitter,
  ) {}

  createTx(tx: SqliteTx, s: { id: string; userId: string; csrf: string; expiresAt: number }): SessionRecord {
    const row: SessionRecord = { ...s, createdAt: tx.now, lastSeenAt: tx.now, revokedAt: null };
    tx.db.insert(consoleSessions).values(row).run();
    return row;
  }

  async get(id: string): Promise<SessionRecord | null> {
    return this.db.select().from(consoleSessions).where(eq(consoleSessions.id, id)).get() ?? null;
  }

  touch(id: string, at: number): Promise<boolean> {
    return this.committer.run(
      (tx) =>
        tx.db
          .update(consoleSessions)
          .set({ lastSeenAt: sql`max(${consoleSessions.lastSeenAt}, ${at})` })
          .where(eq(consoleSessions.id, id))
          .returning({ id: consoleSessions.id })
          .get() !== undefined,
    );
  }

  revokeTx(tx: SqliteTx, id: string): SessionRecord | null {
    return (
      tx.db
        .update(consoleSessions)
        .set({ revokedAt: sql`coalesce(${consoleSessions.revokedAt}, ${tx.now})` })
        .where(eq(consoleSessions.id, id))
        .returning()
        .get() ?? null
    );
  }

  revokeAllOfUserTx(tx: SqliteTx, userId: string): number {
    return tx.db
      .update(consoleSessions)
      .set({ revokedAt: tx.now })
      .where(and(eq(consoleSessions.userId, userId), isNull(consoleSessions.revokedAt)))
      .returning({ id: consoleSessions.id })
      .all().length;
  }

  purge(now: number, idleBefore: number): Promise<number> {
    return this.committer.run(
      (tx) =>
        tx.db
          .delete(consoleSessions)
          .where(
            or(
              isNotNull(consoleSessions.revokedAt),
              lte(consoleSessions.expiresAt, now),
              lte(consoleSessions.lastSeenAt, idleBefore),
            ),
          )
          .returning({ id: consoleSessions.id })
          .all().length,
    );
  }
}
