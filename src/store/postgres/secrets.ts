import type { SecretKey, SecretRow, SecretStore } from "../contract.ts";
import type { PgTx } from "./committer.ts";
import { num, numOrNull, type PgDb } from "./db.ts";

const toSecret = (r: Record<string, unknown>): SecretRow => ({
  tenant: r.tenant as string,
  name: r.name as string,
  version: num(r.version),
  masterKeyId: r.master_key_id as string,
  wrappedKey: r.wrapped_key as Uint8Array,
  sealedValue: r.sealed_value as Uint8Array,
  createdAt: num(r.created_at),
  createdBy: r.created_by as string,
  expiresAt: numOrNull(r.expires_at),
  rotationPeriodMs: numOrNull(r.rotation_period_ms),
  format: (r.format as SecretRow["format"]) ?? null,
});

const VERSIONS = "SELECT * FROM secrets WHERE tenant = $1 AND name = $2 ORDER BY version DESC";

/** The vault's rows on PostgreSQL (src/store/sqlite/secrets.ts is the model); sealed by src/vault/. */
export class PgSecrets implements SecretStore {
  constructor(private readonly db: PgDb) {}

  versionsTx(tx: PgTx, s: SecretKey): SecretRow[] {
    return tx.conn.query(VERSIONS, [s.tenant, s.name]).map(toSecret);
  }

  async versions(s: SecretKey): Promise<SecretRow[]> {
    return (await this.db.read(VERSIONS, [s.tenant, s.name])).map(toSecret);
  }

  existsTx(tx: PgTx, s: SecretKey): boolean {
    return (
      tx.conn.query("SELECT 1 FROM secrets WHERE tenant = $1 AND name = $2 LIMIT 1", [s.tenant, s.name]).length > 0
    );
  }

  insertTx(tx: PgTx, row: SecretRow): void {
    // Sent at once: a repeated version fails in the unit that wrote it.
    tx.conn.query(
      "INSERT INTO secrets (tenant, name, version, master_key_id, wrapped_key, sealed_value, created_at, created_by, " +
        "expires_at, rotation_period_ms, format) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
      [
        row.tenant,
        row.name,
        row.version,
        row.masterKeyId,
        row.wrappedKey,
        row.sealedValue,
        row.createdAt,
        row.createdBy,
        row.expiresAt,
        row.rotationPeriodMs,
        row.format,
      ],
    );
  }

  expireCurrentTx(tx: PgTx, s: SecretKey, expiresAt: number): void {
    tx.conn.defer("UPDATE secrets SET expires_at = $3 WHERE tenant = $1 AND name = $2 AND expires_at IS NULL", [
      s.tenant,
      s.name,
      expiresAt,
    ]);
  }

  sealedWithOtherKeyTx(tx: PgTx, masterKeyId: string, limit: number): SecretRow[] {
    return tx.conn
      .query("SELECT * FROM secrets WHERE master_key_id <> $1 LIMIT $2", [masterKeyId, limit])
      .map(toSecret);
  }

  rewrapTx(
    tx: PgTx,
    s: SecretKey & { version: number },
    wrapped: { masterKeyId: string; wrappedKey: Uint8Array },
  ): void {
    tx.conn.defer(
      "UPDATE secrets SET master_key_id = $4, wrapped_key = $5 WHERE tenant = $1 AND name = $2 AND version = $3",
      [s.tenant, s.name, s.version, wrapped.masterKeyId, wrapped.wrappedKey],
    );
  }

  async names(tenant?: string): Promise<SecretKey[]> {
    const rows = await this.db.read<SecretKey>(
      `SELECT tenant, name FROM secrets ${tenant ? "WHERE tenant = $1 " : ""}GROUP BY tenant, name ORDER BY tenant, name`,
      tenant ? [tenant] : [],
    );
    return rows.map((r) => ({ tenant: r.tenant, name: r.name }));
  }
}
