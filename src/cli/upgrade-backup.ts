import { Database } from "bun:sqlite";
import { chownSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fsyncPath } from "../core/durable-file.ts";
import { AppError } from "../errors/index.ts";
import { DATABASE_FILE } from "../store/index.ts";

/** Where upgrades keep their pre-upgrade copies and the record of the last upgrade. */
export const upgradeDir = (dataDir: string) => join(dataDir, "upgrade");

/** Files that belong to the database: the WAL and its index must go with it, never stay behind another one. */
const databaseFiles = (dataDir: string) => {
  const db = join(dataDir, DATABASE_FILE);
  return { db, wal: `${db}-wal`, shm: `${db}-shm` };
};

/** Give a file made by root to the data dir's owner, so the service can open it. */
function ownLikeDataDir(dataDir: string, path: string): void {
  if (process.getuid?.() !== 0) return;
  const { uid, gid } = statSync(dataDir);
  chownSync(path, uid, gid);
}

/**
 * The pre-upgrade backup: a consistent copy of the database of a stopped appliance
 * (`VACUUM INTO`, so it holds what the WAL held too), at `<data dir>/upgrade/pre-<version>.db`.
 * Spool segments and blobs are not copied: a newer binary only adds to them, and the older one
 * reads what it wrote. The one place that makes the copy, so it can become a full backup archive.
 */
export function takePreUpgradeBackup(dataDir: string, version: string): string {
  const { db } = databaseFiles(dataDir);
  if (!existsSync(db)) throw new AppError("not_found", `no database at ${db}: nothing to upgrade`);
  const dir = upgradeDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `pre-${version.replace(/[^\w.+-]/g, "_")}.db`);
  const temp = `${file}.tmp`;
  rmSync(temp, { force: true });
  const sqlite = new Database(db, { readonly: true });
  try {
    sqlite.run("PRAGMA busy_timeout = 5000");
    sqlite.prepare("VACUUM INTO ?").run(temp);
  } finally {
    sqlite.close();
  }
  fsyncPath(temp);
  renameSync(temp, file);
  fsyncPath(dir);
  ownLikeDataDir(dataDir, file);
  return file;
}

/**
 * Put a pre-upgrade backup back as the database, the appliance stopped. The copy is made beside
 * the database first; the newer binary's WAL and index are removed before the rename (a WAL left
 * beside another database would be replayed into it). A crash before the rename leaves the newer
 * database as it was; after it, the older one.
 */
export function restorePreUpgradeBackup(dataDir: string, backup: string): void {
  if (!existsSync(backup)) throw new AppError("not_found", `the pre-upgrade backup ${backup} is missing`);
  const { db, wal, shm } = databaseFiles(dataDir);
  const temp = `${db}.restore`;
  copyFileSync(backup, temp);
  fsyncPath(temp);
  ownLikeDataDir(dataDir, temp);
  rmSync(wal, { force: true });
  rmSync(shm, { force: true });
  renameSync(temp, db);
  fsyncPath(dataDir);
}
