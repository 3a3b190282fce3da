import { Database } from "bun:sqlite";
import { accessSync, constants, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type BunSQLiteDatabase, drizzle } from "drizzle-orm/bun-sqlite";
import { AppError } from "../errors/index.ts";
import * as schema from "./schema/index.ts";

export type Db = BunSQLiteDatabase<typeof schema>;

export interface SqliteHandle {
  /** The raw connection: transaction control and the few statements drizzle cannot express. */
  readonly sqlite: Database;
  /** drizzle over the same connection. */
  readonly db: Db;
  readonly path: string;
}

export const DATABASE_FILE = "agentowl.db";
const BUSY_TIMEOUT_MS = 5000;

const reason = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message ?? String(e);

/** Create the data dir and its folders (0700), and prove it is writable. */
export function prepareDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const sub of ["spool", "blobs"]) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new AppError("storage_full", `cannot create data dir ${dir}: ${reason(e)}`, { cause: e });
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new AppError("storage_full", `data dir ${dir} is not writable: ${reason(e)}`, { cause: e });
  }
}

/**
 * Open the database with the durability SPEC §3.1 demands: WAL, synchronous=FULL (every commit
 * fsyncs the WAL), foreign keys on, and a busy timeout so a short lock held by another process
 * (a backup, the CLI) waits instead of failing.
 */
export function openDatabase(path: string, opts: { busyTimeoutMs?: number } = {}): SqliteHandle {
  let sqlite: Database;
  try {
    sqlite = new Database(path, { create: true, strict: true });
  } catch (e) {
    throw new AppError("storage_full", `cannot open database ${path}: ${reason(e)}`, { cause: e });
  }
  try {
    sqlite.run(`PRAGMA busy_timeout = ${opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS}`);
    const mode = sqlite.query<{ journal_mode: string }, []>("PRAGMA journal_mode = WAL").get()?.journal_mode;
    if (mode !== "wal") throw new Error(`journal_mode is ${mode}, WAL is required`);
    sqlite.run("PRAGMA synchronous = FULL");
    sqlite.run("PRAGMA foreign_keys = ON");
  } catch (e) {
    sqlite.close();
    throw describeOpenError(e, path);
  }
  return { sqlite, db: drizzle(statementCaching(sqlite), { schema }), path };
}

/**
 * drizzle prepares (compiles) a new statement for every query it runs; bun:sqlite's `query()`
 * keeps compiled statements in a bounded cache keyed by their SQL. Handing drizzle a database
 * whose `prepare` is `query` compiles each query shape once: a third of the dispatcher's CPU
 * time was statement compilation. Safe because statements run synchronously, one at a time.
 */
function statementCaching(sqlite: Database): Database {
  return new Proxy(sqlite, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => target.query(sql);
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

export function describeOpenError(e: unknown, path: string): AppError {
  const msg = (e as Error).message ?? String(e);
  if (/locked|busy/i.test(msg)) {
    return new AppError("unavailable", `database ${path} is locked by another process (${msg})`, { cause: e });
  }
  if (/not a database|malformed|corrupt/i.test(msg)) {
    return new AppError("internal", `database ${path} is not a valid SQLite database (${msg}); restore a backup`, { cause: e });
  }
  return new AppError("internal", `cannot use database ${path}: ${msg}`, { cause: e });
}

/**
 * One `agentowl serve` per data dir. The lock is an exclusive SQLite lock on a side file,
 * held by the open connection: the kernel drops it when the process dies, even by SIGKILL,
 * so a crash never leaves a stale lock behind.
 */
export function lockDataDir(dir: string): { release(): void } {
  const path = join(dir, "agentowl.lock");
  const lock = new Database(path, { create: true });
  try {
    lock.run("PRAGMA busy_timeout = 0");
    lock.run("PRAGMA locking_mode = EXCLUSIVE");
    lock.run("BEGIN EXCLUSIVE");
    lock.run("CREATE TABLE IF NOT EXISTS holder (pid INTEGER)");
    lock.run("DELETE FROM holder");
    lock.run(`INSERT INTO holder VALUES (${process.pid})`);
    lock.run("COMMIT");
  } catch (e) {
    lock.close();
    throw new AppError("conflict", `data dir ${dir} is in use by another agentowl process`, { cause: e });
  }
  return { release: () => lock.close() };
}
