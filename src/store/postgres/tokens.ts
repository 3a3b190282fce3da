import { newId } from "../../core/ids.ts";
import type { TokenRecord, TokenStore } from "../contract.ts";
import type { PgAudit } from "./audit.ts";
import type { PgCommitter } from "./committer.ts";
import { num, type PgDb } from "./db.ts";
import { Rows } from "./rows.ts";
import { tokens } from "./schema/index.ts";

const rows = new Rows<TokenRecord & { hash: string }>(tokens);
const toRecord = (r: Record<string, unknown>): TokenRecord => {
  const { hash: _hash, ...record } = rows.from(r);
  return record;
};

/** API tokens on PostgreSQL (src/store/sqlite/tokens.ts is the model). */
export class PgTokens implements TokenStore {
  constructor(
    private readonly db: PgDb,
    private readonly committer: PgCommitter,
    private readonly audit: PgAudit,
  ) {}

  create(t: {
    name: string;
    hash: string;
    scopes: string[];
    expiresAt: number | null;
    createdBy: string;
  }): Promise<TokenRecord> {
    return this.committer.run((tx) => {
      const row = { id: newId("tok", tx.now), createdAt: tx.now, revokedAt: null, ...t };
      // The entry names the token and its scopes, never its value or hash.
      this.audit.appendTx(tx, {
        actor: t.createdBy,
        action: "token.create",
        target: row.id,
        details: { name: t.name, scopes: t.scopes, expires_at: t.expiresAt },
      });
      const insert = rows.insert(row);
      tx.conn.defer(insert.text, insert.params);
      const { hash: _hash, ...record } = row;
      return record;
    });
  }

  async findByHash(hash: string): Promise<TokenRecord | null> {
    const [r] = await this.db.read("SELECT * FROM tokens WHERE hash = $1", [hash]);
    return r ? toRecord(r) : null;
  }

  async get(id: string): Promise<TokenRecord | null> {
    const [r] = await this.db.read("SELECT * FROM tokens WHERE id = $1", [id]);
    return r ? toRecord(r) : null;
  }

  async list(q: { after?: string; limit: number }): Promise<TokenRecord[]> {
    const found = q.after
      ? await this.db.read("SELECT * FROM tokens WHERE id > $1 ORDER BY id LIMIT $2", [q.after, q.limit])
      : await this.db.read("SELECT * FROM tokens ORDER BY id LIMIT $1", [q.limit]);
    return found.map(toRecord);
  }

  revoke(id: string, actor: string): Promise<TokenRecord | null> {
    return this.committer.run((tx) => {
      const [r] = tx.conn.query("UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING *", [
        id,
        tx.now,
      ]);
      if (r) this.audit.appendTx(tx, { actor, action: "token.revoke", target: id, details: { name: r.name } });
      return r ? toRecord(r) : null;
    });
  }

  async countActiveAdmins(now: number): Promise<number> {
    const [r] = await this.db.read(
      "SELECT count(*) AS n FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) " +
        `AND scopes @> '["admin"]'::jsonb`,
      [now],
    );
    return num(r!.n);
  }
}
