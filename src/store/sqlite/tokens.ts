import { asc, eq, gt, isNull, or, sql } from "drizzle-orm";
import type { TokenRecord, TokenStore } from "../contract.ts";
import { newTokenRow } from "../new-rows.ts";
import { tokens } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteAudit } from "./audit.ts";
import type { SqliteCommitter } from "./committer.ts";

type Row = typeof tokens.$inferSelect;
const toRecord = ({ hash: _hash, ...r }: Row): TokenRecord => r;

export class SqliteTokens implements TokenStore {
  /** Every API request's lookup, prepared once (drizzle's builder costs more than the query). */
  private readonly byHash;

  constructor(
    private readonly db: Db,
    private readonly committer: SqliteCommitter,
    private readonly audit: SqliteAudit,
  ) {
    this.byHash = db
      .select()
      .from(tokens)
      .where(eq(tokens.hash, sql.placeholder("hash")))
      .prepare();
  }

  create(t: Parameters<TokenStore["create"]>[0]): Promise<TokenRecord> {
    return this.committer.run((tx) => {
      const { row, entry } = newTokenRow(t, tx.now);
      this.audit.appendTx(tx, entry);
      tx.db.insert(tokens).values(row).run();
      return toRecord(row);
    });
  }

  async findByHash(hash: string): Promise<TokenRecord | null> {
    const r = this.byHash.get({ hash });
    return r ? toRecord(r) : null;
  }

  async get(id: string): Promise<TokenRecord | null> {
    const r = this.db.select().from(tokens).where(eq(tokens.id, id)).get();
    return r ? toRecord(r) : null;
  }

  async list(q: { after?: string; limit: number }): Promise<TokenRecord[]> {
    return this.db
      .select()
      .from(tokens)
      .where(q.after ? gt(tokens.id, q.after) : undefined)
      .orderBy(asc(tokens.id))
      .limit(q.limit)
      .all()
      .map(toRecord);
  }

  revoke(id: string, actor: string): Promise<TokenRecord | null> {
    return this.committer.run((tx) => {
      const r = tx.db
        .update(tokens)
        .set({ revokedAt: sql`coalesce(${tokens.revokedAt}, ${tx.now})` })
        .where(eq(tokens.id, id))
        .returning()
        .get();
      if (r) this.audit.appendTx(tx, { actor, action: "token.revoke", target: id, details: { name: r.name } });
      return r ? toRecord(r) : null;
    });
  }

  async countActiveAdmins(now: number): Promise<number> {
    const admin = sql`EXISTS (SELECT 1 FROM json_each(${tokens.scopes}) WHERE value = 'admin')`;
    return (
      this.db
        .select({ n: sql<number>`count(*)` })
        .from(tokens)
        .where(
          sql`${isNull(tokens.revokedAt)} AND ${or(isNull(tokens.expiresAt), gt(tokens.expiresAt, now))} AND ${admin}`,
        )
        .get()?.n ?? 0
    );
  }
}
