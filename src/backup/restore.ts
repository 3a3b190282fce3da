import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { type Clock, systemClock } from "../core/clock.ts";
import { fsyncPath } from "../core/durable-file.ts";
import { AppError } from "../errors/index.ts";
import { checkDatabaseFile, DATABASE_FILE, lockDataDir, SCHEMA_VERSION } from "../store/index.ts";
import { ArchiveRefused, type EntrySink, type Manifest, type Progress, readArchive } from "./archive.ts";

/**
 * `agentowl backup --verify` and `agentowl restore` (docs/operations.md#backups).
 */

/** Every checksum, the manifest, and the database's `PRAGMA integrity_check` (on a temp copy). */
export function verifyArchive(file: string, opts: { tmpDir: string; progress?: Progress }): Manifest {
  const work = join(opts.tmpDir, `.agentowl-verify-${process.pid}`);
  mkdirSync(work, { recursive: true, mode: 0o700 });
  try {
    const manifest = readArchive(file, {
      progress: opts.progress,
      sink: (f) => (f.path === DATABASE_FILE ? fileSink(join(work, DATABASE_FILE), false) : null),
    });
    checkDatabase(join(work, DATABASE_FILE), manifest);
    return manifest;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function checkDatabase(path: string, manifest: Manifest): void {
  const { problems, schemaVersion } = checkDatabaseFile(path);
  if (problems.length)
    throw new ArchiveRefused(`backup archive refused: its database fails integrity_check: ${problems[0]}`);
  if (schemaVersion !== manifest.schema_version)
    throw new ArchiveRefused(
      `backup archive refused: its database is at schema ${schemaVersion}, the manifest says ${manifest.schema_version}`,
    );
}

function fileSink(path: string, durable: boolean): EntrySink {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const fd = openSync(path, "w", 0o600);
  let open = true;
  return {
    write(bytes) {
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    },
    close() {
      if (durable) fsyncSync(fd);
      closeSync(fd);
      open = false;
    },
    abort() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Files of the data dir being replaced that the archive does not hold and the appliance needs. */
const KEPT = ["master.key", "master.key.next", "master.key.previous"];

/**
 * Swap two directories in one step: renameat2(RENAME_EXCHANGE) on Linux, renamex_np(RENAME_SWAP)
 * on macOS. False when the system has neither (then the caller renames twice).
 */
function exchange(a: string, b: string): boolean {
  try {
    const { dlopen, FFIType } = require("bun:ffi") as typeof import("bun:ffi");
    const cstr = (s: string) => Buffer.from(`${s}\0`);
    if (process.platform === "linux") {
      const lib = dlopen("libc.so.6", {
        renameat2: {
          args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32],
          returns: FFIType.i32,
        },
      });
      const AT_FDCWD = -100;
      const RENAME_EXCHANGE = 2;
      const rc = lib.symbols.renameat2(AT_FDCWD, cstr(a), AT_FDCWD, cstr(b), RENAME_EXCHANGE);
      lib.close();
      return rc === 0;
    }
    if (process.platform === "darwin") {
      const lib = dlopen("libSystem.B.dylib", {
        renamex_np: { args: [FFIType.ptr, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
      });
      const RENAME_SWAP = 2;
      const rc = lib.symbols.renamex_np(cstr(a), cstr(b), RENAME_SWAP);
      lib.close();
      return rc === 0;
    }
  } catch {
    // No libc by that name (musl): the two renames below.
  }
  return false;
}

/** fsync every directory under `dir` (and `dir`): the extracted files' names must be durable too. */
function fsyncTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) fsyncTree(join(dir, e.name));
  fsyncPath(dir);
}

export interface RestoreResult {
  manifest: Manifest;
  dataDir: string;
  /** Where the data dir that was replaced now is (kept until the admin removes it), or null. */
  previous: string | null;
}

/**
 * Restore an archive into `dataDir`: refused while a server holds it; every entry extracted into a
 * sibling temp dir with its checksum checked as it is read (nothing of the data dir is touched
 * until the whole archive verified), each file fsynced, the database's integrity checked, then the
 * two directories swapped in one rename. A restore killed at any point before the swap leaves the
 * old data dir as it was (and a `<data dir>.restoring-*` folder the next restore removes).
 */
export function restoreArchive(opts: {
  archive: string;
  dataDir: string;
  clock?: Clock;
  progress?: Progress;
}): RestoreResult {
  const dataDir = resolve(opts.dataDir);
  const parent = dirname(dataDir);
  const name = basename(dataDir);
  mkdirSync(parent, { recursive: true });
  const exists = existsSync(dataDir);
  let lock: { release(): void } | null = null;
  if (exists) {
    try {
      lock = lockDataDir(dataDir);
    } catch (e) {
      if (e instanceof AppError && e.kind === "conflict")
        throw new AppError("conflict", `refusing to restore: a server holds ${dataDir} (stop it first)`);
      throw e;
    }
  }
  try {
    // What an earlier restore left when it was killed: never the data dir itself.
    for (const n of readdirSync(parent))
      if (n.startsWith(`${name}.restoring-`)) rmSync(join(parent, n), { recursive: true, force: true });
    const stamp = new Date((opts.clock ?? systemClock).now()).toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
    const temp = join(parent, `${name}.restoring-${process.pid}`);
    mkdirSync(temp, { mode: 0o700 });
    let manifest: Manifest;
    try {
      manifest = readArchive(opts.archive, {
        progress: opts.progress,
        sink: (f) => fileSink(join(temp, f.path), true),
      });
      checkDatabase(join(temp, DATABASE_FILE), manifest);
      if (manifest.schema_version > SCHEMA_VERSION)
        throw new AppError(
          "conflict",
          `the backup's database is at schema ${manifest.schema_version}, newer than this binary's ${SCHEMA_VERSION}: restore with the version that made it (${manifest.app_version})`,
        );
      for (const sub of ["spool", "blobs", "audit"]) mkdirSync(join(temp, sub), { recursive: true, mode: 0o700 });
      if (exists) for (const f of KEPT) if (existsSync(join(dataDir, f))) copyFileSync(join(dataDir, f), join(temp, f));
      for (const f of KEPT) if (existsSync(join(temp, f))) fsyncPath(join(temp, f));
      fsyncTree(temp);
    } catch (e) {
      rmSync(temp, { recursive: true, force: true });
      throw e;
    }

    let previous: string | null = null;
    if (exists) {
      previous = join(parent, `${name}.before-restore-${stamp}`);
      if (exchange(temp, dataDir)) renameSync(temp, previous);
      else {
        renameSync(dataDir, previous);
        renameSync(temp, dataDir);
      }
      // Earlier backups stay with the data dir they were made of.
      if (existsSync(join(previous, "backups"))) renameSync(join(previous, "backups"), join(dataDir, "backups"));
    } else renameSync(temp, dataDir);
    fsyncPath(parent);
    return { manifest, dataDir, previous };
  } finally {
    lock?.release();
  }
}
