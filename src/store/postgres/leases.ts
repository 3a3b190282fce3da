import type { SingletonLeases } from "../contract.ts";
import type { PgCommitter } from "./committer.ts";

/**
 * Singleton leases on PostgreSQL: one row per name (singleton_leases). Taking or renewing is one
 * upsert that changes the row only when this holder has it or it expired, so of two nodes asking
 * at once exactly one gets it (the row lock orders them, the second sees the first's expiry).
 */
export class PgLeases implements SingletonLeases {
  constructor(private readonly committer: PgCommitter) {}

  acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.committer.run(
      (tx) =>
        tx.conn.query(
          "INSERT INTO singleton_leases (name, holder, expires_at) VALUES ($1, $2, $3) " +
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at " +
            "WHERE singleton_leases.holder = excluded.holder OR singleton_leases.expires_at <= $4 RETURNING name",
          [name, holder, tx.now + ttlMs, tx.now],
        ).length === 1,
    );
  }

  release(name: string, holder: string): Promise<void> {
    return this.committer.run((tx) => {
      tx.conn.defer("DELETE FROM singleton_leases WHERE name = $1 AND holder = $2", [name, holder]);
    });
  }
}
