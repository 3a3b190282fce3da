import { type Clock, systemClock } from "../core/clock.ts";
import type { Database } from "bun:sqlite";
import { AppError } from "../errors/index.ts";
import { embeddedMigrations } from "./migrations.generated.ts";
import { describeOpenError } from "./sqlite.ts";

export interface Migration {
  idx: number;
  tag: string;
  sql: string;
}

export interface MigrateResult {
  /** Tags applied by this call. */
  applied: string[];
  /** Number of migrations the database now has: the schema version. */
  version: number;
}

/** The schema version this binary knows. */
export const SCHEMA_VERSION = embeddedMigrations.length;

const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex");

/**
 * Apply the migrations embedded in the binary, all pending ones in one transaction: a failure
 * leaves the database exactly as it was. A database that has migrations this binary does not
 * know (a newer agentowl wrote it), or whose applied migrations differ from ours, is refused.
 *
 * drizzle-orm's own migrator reads a folder at run time, which a compiled binary does not have;
 * this one takes the SQL that drizzle-kit generated, imported as text at build time.
 */
export function migrate(
  sqlite: Database,
  migrations: readonly Migration[] = embeddedMigrations,
  clock: Clock = systemClock,
): MigrateResult {
  try {
    sqlite.run("BEGIN IMMEDIATE");
  } catch (e) {
    throw describeOpenError(e, sqlite.filename);
  }
  let current: Migration | null = null;
  try {
    sqlite.run(
      "CREATE TABLE IF NOT EXISTS schema_migrations (idx INTEGER PRIMARY KEY, tag TEXT NOT NULL, hash TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    );
    const done = sqlite
      .query<{ idx: number; tag: string; hash: string }, []>(
        "SELECT idx, tag, hash FROM schema_migrations ORDER BY idx",
      )
      .all();
    const newest = done.at(-1);
    if (newest && newest.idx >= migrations.length) {
      throw new AppError(
        "conflict",
        `database ${sqlite.filename} has schema version ${newest.idx + 1}, newer than this agentowl knows ` +
          `(${migrations.length}): run the newer binary or restore a backup`,
      );
    }
    for (const row of done) {
      const ours = migrations[row.idx];
      if (!ours || ours.tag !== row.tag || sha256(ours.sql) !== row.hash) {
        throw new AppError(
          "conflict",
          `database ${sqlite.filename}: applied migration ${row.tag} differs from this binary's; refusing to continue`,
        );
      }
    }
    const applied: string[] = [];
    const insert = sqlite.prepare("INSERT INTO schema_migrations (idx, tag, hash, applied_at) VALUES (?, ?, ?, ?)");
    for (const m of migrations.slice(done.length)) {
      current = m;
      for (const statement of m.sql.split("--> statement-breakpoint")) {
        if (statement.trim()) sqlite.run(statement);
      }
      insert.run(m.idx, m.tag, sha256(m.sql), clock.now());
      applied.push(m.tag);
    }
    // Written only when it changes: a start on an up-to-date database commits nothing, so waits for no fsync.
    const version = sqlite.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version;
    if (version !== migrations.length) sqlite.run(`PRAGMA user_version = ${migrations.length}`);
    sqlite.run("COMMIT");
    return { applied, version: migrations.length };
  } catch (e) {
    sqlite.run("ROLLBACK");
    if (e instanceof AppError) throw e;
    const what = current ? `migration ${current.tag} failed` : "reading the schema version failed";
    throw new AppError("internal", `${what}: ${(e as Error).message}; the database was left unchanged`, { cause: e });
  }
}
