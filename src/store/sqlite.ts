import { Database } from "bun:sqlite";
import { accessSync, chmodSync, constants, lstatSync, mkdirSync, readdirSync } from "node:fs";
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

/** The data dir's folders; each is private (0700). */
const DATA_SUBDIRS = ["spool", "blobs", "audit"];
/** Files in the data dir that must not be readable by others, where they exist. */
const PRIVATE_FILES = [
  DATABASE_FILE,
  `${DATABASE_FILE}-wal`,
  `${DATABASE_FILE}-shm`,
  "agentowl.lock",
  "agentowl.toml",
  "master.key",
  "master.key.next",
  "master.key.previous",
  "audit.key",
  "tls/key.pem",
  "audit/checkpoints.jsonl",
];

/** chmod away the group and other bits of `path` when it has any; true when it did. */
function tighten(path: string, mode: number): boolean {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return false; // not there (yet)
  }
  if (st.isSymbolicLink() || (st.mode & 0o077) === 0) return false;
  try {
    chmodSync(path, mode);
  } catch (e) {
    // A read-only mount (a spool disk remounted ro) takes no new data to protect; the appliance
    // starts and answers 452 for what it cannot store there.
    if ((e as NodeJS.ErrnoException).code === "EROFS") return false;
    throw new AppError(
      "storage_full",
      `cannot make ${path} private (mode ${(st.mode & 0o777).toString(8)}): ${reason(e)}`,
      { cause: e },
    );
  }
  return true;
}

/** The spool's and blobs' files and folders, depth first, without following links. */
function tightenTree(dir: string, out: string[]): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (tighten(path, 0o700)) out.push(path);
      tightenTree(path, out);
    } else if (e.isFile() && tighten(path, 0o600)) out.push(path);
  }
}

/**
 * Create the data dir and its folders (0700), make what is already there private, and prove it
 * is writable. Files this process creates from now on are private too (umask 077): SQLite makes
 * the database and its WAL/SHM files 0644 under the usual umask. An existing data dir that others
 * could enter is a sign its files were made with open modes: then (and with `deep`, which
 * `agentowl init` asks for) every file under spool/ and blobs/ is checked as well. `files` are
 * more files to make private (a master key file kept outside the data dir). Returns the paths it
 * tightened, for the caller to say so.
 */
export function prepareDataDir(dir: string, opts: { deep?: boolean; files?: readonly string[] } = {}): string[] {
  process.umask(0o077);
  const tightened: string[] = [];
  let wasOpen = false;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    wasOpen = tighten(dir, 0o700);
    if (wasOpen) tightened.push(dir);
    for (const sub of DATA_SUBDIRS) {
      mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
      if (tighten(join(dir, sub), 0o700)) tightened.push(join(dir, sub));
    }
    if (tighten(join(dir, "tls"), 0o700)) tightened.push(join(dir, "tls"));
    for (const path of [...PRIVATE_FILES.map((f) => join(dir, f)), ...(opts.files ?? [])])
      if (tighten(path, 0o600)) tightened.push(path);
    if (wasOpen || opts.deep) for (const sub of ["spool", "blobs"]) tightenTree(join(dir, sub), tightened);
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw new AppError("storage_full", `cannot create data dir ${dir}: ${reason(e)}`, { cause: e });
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new AppError("storage_full", `data dir ${dir} is not writable: ${reason(e)}`, { cause: e });
  }
  return [...new Set(tightened)];
}

/**
 * Open the database with the durability guarantee 1 (docs/guarantees.md) demands: WAL, synchronous=FULL (every commit
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
    // Statement journals in memory: an INSERT into a table with several indexes keeps one inside
    // the group commit's transaction, and past 64 KiB SQLite moves it to a temp file, after which
    // every later statement of that transaction writes its pages there too (measured on the
    // webhook ingress: 3 KiB of temp-file writes per event and twice the insert's CPU;
    // docs/performance.md#http-ingress). Nothing durable lives there.
    sqlite.run("PRAGMA temp_store = MEMORY");
    incrementalVacuum(sqlite);
  } catch (e) {
    sqlite.close();
    throw describeOpenError(e, path);
  }
  return { sqlite, db: drizzle(statementCaching(sqlite), { schema }), path };
}

/**
 * Freed pages go back to the disk (docs/operations.md#retention): `auto_vacuum = INCREMENTAL`,
 * after which the retention sweep runs `incremental_vacuum`. A new database takes the mode at
 * once; an existing one only through one full VACUUM, done here the first time (it rewrites the
 * file: seconds for a large database, once). A read-only opener leaves the file as it is.
 */
function incrementalVacuum(sqlite: Database): void {
  const mode = sqlite.query<{ auto_vacuum: number }, []>("PRAGMA auto_vacuum").get()?.auto_vacuum;
  if (mode === 2) return;
  sqlite.run("PRAGMA auto_vacuum = INCREMENTAL");
  const pages = sqlite.query<{ page_count: number }, []>("PRAGMA page_count").get()?.page_count ?? 0;
  if (pages > 0) {
    try {
      sqlite.run("VACUUM");
    } catch {
      // Another connection is writing (the server, while a tool opens the file): the server's own open does it.
    }
  }
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
    return new AppError("internal", `database ${path} is not a valid SQLite database (${msg}); restore a backup`, {
      cause: e,
    });
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
