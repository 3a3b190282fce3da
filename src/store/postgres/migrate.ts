import { type Clock, systemClock } from "../../core/clock.ts";
import { AppError } from "../../errors/index.ts";
import type { Migration } from "../migrate.ts";
import type { SyncConnection } from "./bridge.ts";
import { embeddedMigrations } from "./migrations.generated.ts";

/** The schema version this binary knows on PostgreSQL. */
export const PG_SCHEMA_VERSION = embeddedMigrations.length;

/** Any number, the same on every node: the advisory lock that makes concurrent migrations take turns. */
const MIGRATION_LOCK = 0x6167_6f77;

const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex");

/**
 * Apply the embedded PostgreSQL migrations as src/store/migrate.ts does for SQLite: all pending
 * ones in one transaction, recorded in `schema_migrations`, a newer or different database
 * refused. Nodes starting together take turns on an advisory lock; the second finds nothing to do.
 */
export function migratePostgres(
  conn: SyncConnection,
  migrations: readonly Migration[] = embeddedMigrations,
  clock: Clock = systemClock,
): { applied: string[]; version: number } {
  conn.query("BEGIN");
  let current: Migration | null = null;
  try {
    conn.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    conn.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (idx integer PRIMARY KEY, tag text NOT NULL, hash text NOT NULL, applied_at bigint NOT NULL)",
    );
    const done = conn.query<{ idx: number; tag: string; hash: string }>(
      "SELECT idx, tag, hash FROM schema_migrations ORDER BY idx",
    );
    const newest = done.at(-1);
    if (newest && newest.idx >= migrations.length) {
      throw new AppError(
        "conflict",
        `the database has schema version ${newest.idx + 1}, newer than this agentowl knows ` +
          `(${migrations.length}): run the newer binary or restore a backup`,
      );
    }
    for (const row of done) {
      const ours = migrations[row.idx];
      if (!ours || ours.tag !== row.tag || sha256(ours.sql) !== row.hash) {
        throw new AppError(
          "conflict",
          `the database's applied migration ${row.tag} differs from this binary's; refusing to continue`,
        );
      }
    }
    const applied: string[] = [];
    for (const m of migrations.slice(done.length)) {
      current = m;
      for (const statement of m.sql.split("--> statement-breakpoint")) {
        if (statement.trim()) conn.query(statement);
      }
      conn.query("INSERT INTO schema_migrations (idx, tag, hash, applied_at) VALUES ($1, $2, $3, $4)", [
        m.idx,
        m.tag,
        sha256(m.sql),
        clock.now(),
      ]);
      applied.push(m.tag);
    }
    conn.query("COMMIT");
    return { applied, version: migrations.length };
  } catch (e) {
    conn.discard();
    try {
      conn.query("ROLLBACK");
    } catch {
      // The connection itself failed: nothing was committed.
    }
    if (e instanceof AppError) throw e;
    const what = current ? `migration ${current.tag} failed` : "reading the schema version failed";
    throw new AppError("internal", `${what}: ${(e as Error).message}; the database was left unchanged`, { cause: e });
  }
}
