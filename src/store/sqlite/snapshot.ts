import { Database } from "bun:sqlite";
import { closeSync, fsyncSync, openSync } from "node:fs";

/**
 * The database's part of a backup (docs/operations.md#backups), synchronous: the backup worker
 * (src/backup/worker.ts) calls these on its own thread and connection, never the event loop's.
 *
 * `VACUUM INTO` rather than the online backup API: bun:sqlite has no binding for
 * sqlite3_backup_*, and VACUUM INTO reads the whole database inside one read transaction, so the
 * copy is the database as of one commit while the server keeps committing (a WAL reader never
 * blocks the writer). The backup API, stepped, restarts whenever another connection writes.
 */

/** A consistent copy of the database at `dbPath` written to `dest` (which must not exist), fsynced. */
export function snapshotDatabase(dbPath: string, dest: string, busyTimeoutMs = 5000): void {
  const db = new Database(dbPath, { readonly: true });
  try {
    db.run(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    db.query("VACUUM INTO ?").run(dest);
  } finally {
    db.close();
  }
  const fd = openSync(dest, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** What a database's rows point at outside it: spool segments (how many bytes of each) and blobs. */
export interface ReferencedFiles {
  /** Each segment's name under spool/ and the end of the last message in it. */
  segments: { name: string; end: number }[];
  /** sha256 of every attachment blob an event names. */
  blobs: string[];
  /** The database's schema version (`PRAGMA user_version`). */
  schemaVersion: number;
}

/** The files a database (a snapshot, opened read-only) refers to. */
export function referencedFiles(path: string): ReferencedFiles {
  const db = new Database(path, { readonly: true });
  try {
    const segments = db
      .query<{ name: string; end: number }, []>(
        "SELECT spool_segment AS name, max(spool_offset + spool_length) AS end FROM mail_messages GROUP BY spool_segment ORDER BY spool_segment",
      )
      .all();
    const blobs = db
      .query<{ sha: string }, []>(
        "SELECT DISTINCT json_extract(a.value, '$.sha256') AS sha FROM events, json_each(events.envelope, '$.data.attachments') AS a WHERE sha IS NOT NULL ORDER BY sha",
      )
      .all()
      .map((r) => r.sha);
    const schemaVersion = db.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version ?? 0;
    return { segments, blobs, schemaVersion };
  } finally {
    db.close();
  }
}

/** `PRAGMA integrity_check` of a database file and its schema version: no problems is []. */
export function checkDatabaseFile(path: string): { problems: string[]; schemaVersion: number } {
  let db: Database;
  try {
    db = new Database(path, { readonly: true });
  } catch (e) {
    return { problems: [`cannot open: ${(e as Error).message}`], schemaVersion: 0 };
  }
  try {
    const rows = db.query<{ integrity_check: string }, []>("PRAGMA integrity_check(20)").all();
    const problems = rows.map((r) => r.integrity_check).filter((m) => m !== "ok");
    const schemaVersion = db.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version ?? 0;
    return { problems, schemaVersion };
  } catch (e) {
    return { problems: [(e as Error).message], schemaVersion: 0 };
  } finally {
    db.close();
  }
}
