import { and, asc, desc, eq, isNull, ne } from "drizzle-orm";
import type { SecretKey, SecretRow, SecretStore } from "../contract.ts";
import { secrets } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

type Row = typeof secrets.$inferSelect;
// The blobs come back as Buffers, which are Uint8Arrays: a row is the contract's row.
same<Same<Omit<SecretRow, "wrappedKey" | "sealedValue">, Omit<Row, "wrappedKey" | "sealedValue">>>(true);

const bytes = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** The vault's rows (src/store/schema/vault.ts); what they hold is sealed by src/vault/. */
export class SqliteSecrets implements SecretStore {
  constructor(private readonly db: Db) {}

  private rows(db: Db, s: SecretKey): SecretRow[] {
    return db
      .select()
      .from(secrets)
      .where(and(eq(secrets.tenant, s.tenant), eq(secrets.name, s.name)))
      .orderBy(desc(secrets.version))
      .all();
  }

  versionsTx(tx: SqliteTx, s: SecretKey): SecretRow[] {
    return this.rows(tx.db, s);
  }

  async versions(s: SecretKey): Promise<SecretRow[]> {
    return this.rows(this.db, s);
  }

  existsTx(tx: SqliteTx, s: SecretKey): boolean {
    return (
      tx.db
        .select({ version: secrets.version })
        .from(secrets)
        .where(and(eq(secrets.tenant, s.tenant), eq(secrets.name, s.name)))
        .limit(1)
        .get() !== undefined
    );
  }

  insertTx(tx: SqliteTx, row: SecretRow): void {
    tx.db
      .insert(secrets)
      .values({ ...row, wrappedKey: bytes(row.wrappedKey), sealedValue: bytes(row.sealedValue) })
      .run();
  }

  expireCurrentTx(tx: SqliteTx, s: SecretKey, expiresAt: number): void {
    tx.db
      .update(secrets)
      .set({ expiresAt })
      .where(and(eq(secrets.tenant, s.tenant), eq(secrets.name, s.name), isNull(secrets.expiresAt)))
      .run();
  }

  sealedWithOtherKeyTx(tx: SqliteTx, masterKeyId: string, limit: number): SecretRow[] {
    return tx.db.select().from(secrets).where(ne(secrets.masterKeyId, masterKeyId)).limit(limit).all();
  }

  rewrapTx(
    tx: SqliteTx,
    s: SecretKey & { version: number },
    wrapped: { masterKeyId: string; wrappedKey: Uint8Array },
  ): void {
    tx.db
      .update(secrets)
      .set({ masterKeyId: wrapped.masterKeyId, wrappedKey: bytes(wrapped.wrappedKey) })
      .where(and(eq(secrets.tenant, s.tenant), eq(secrets.name, s.name), eq(secrets.version, s.version)))
      .run();
  }

  async names(tenant?: string): Promise<SecretKey[]> {
    return this.db
      .select({ tenant: secrets.tenant, name: secrets.name })
      .from(secrets)
      .where(tenant ? eq(secrets.tenant, tenant) : undefined)
      .groupBy(secrets.tenant, secrets.name)
      .orderBy(asc(secrets.tenant), asc(secrets.name))
      .all();
  }
}
