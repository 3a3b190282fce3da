import { copyFileSync, existsSync, mkdirSync, renameSync, unlinkSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import {
  ArchiveRefused,
  archiveName,
  type BackupProgress,
  createBackup,
  type Manifest,
  restoreArchive,
  verifyArchive,
} from "../backup/index.ts";
import { systemClock } from "../core/clock.ts";
import { fsyncPath } from "../core/durable-file.ts";
import { loadConfig } from "../config/index.ts";
import { AppError } from "../errors/index.ts";
import { DATABASE_FILE, lockDataDir } from "../store/index.ts";
import { isCompiledBinary } from "../version.ts";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { type Command, type CommandIO, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";

/** `agentowl backup`, `agentowl backup --verify`, `agentowl restore` (docs/operations.md#backups). */

const mib = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

/** A progress line on stderr per 10 % or per second, whichever comes first. */
export function progressLines(io: CommandIO, label: string): (done: number, total: number) => void {
  let lastTenth = -1;
  let lastAt = performance.now();
  return (done, total) => {
    const tenth = total ? Math.floor((done / total) * 10) : 10;
    const now = performance.now();
    if (tenth === lastTenth && now - lastAt < 1000) return;
    lastTenth = tenth;
    lastAt = now;
    io.err(`${label}: ${total ? Math.floor((done / total) * 100) : 100}% (${mib(done)} of ${mib(total)})\n`);
  };
}

/** An archive refused is one line and exit 1; other failures keep their kind's code. */
function refused(e: unknown): never {
  if (e instanceof ArchiveRefused) throw new CommandFailure(e.message, EXIT.failed);
  throw e;
}

const describe = (m: Manifest) =>
  `${m.files.length} files, schema ${m.schema_version}, made ${m.created_at} by agentowl ${m.app_version}`;

function missingNote(m: { spool: number; blobs: number }): string {
  return m.spool || m.blobs
    ? ` (already gone from the data dir when it was taken, pruned by retention: ${m.spool} spool segments, ${m.blobs} blobs)`
    : "";
}

function reportProgress(io: CommandIO, label: string): (p: BackupProgress) => void {
  const lines = progressLines(io, label);
  return (p) => {
    if (p.phase) io.err(`${label}: ${p.phase}\n`);
    else if (p.total !== undefined) lines(p.done ?? 0, p.total);
  };
}

/** Move `from` to `to`: a rename, or a copy when they are on different disks. */
function moveFile(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
    copyFileSync(from, `${to}.partial`);
    fsyncPath(`${to}.partial`);
    renameSync(`${to}.partial`, to);
    unlinkSync(from);
  }
  fsyncPath(dirname(to));
}

/** `--max-rate MIB`: MiB per second, or undefined when not given. */
function maxRateOf(values: Record<string, unknown>): number | undefined {
  const raw = stringOpt(values, "max-rate");
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) > 100_000)
    throw new UsageError(`--max-rate takes MiB per second (a whole number from 0 to 100000; 0: no cap), not '${raw}'`);
  return Number(raw);
}

/** Through the running server (it holds the data dir): POST /v1/backups, its progress lines relayed. */
async function backupThroughServer(
  values: Record<string, unknown>,
  io: CommandIO,
  dest: string | null,
  maxRate: number | undefined,
) {
  const res = await clientFor(values, io.env).send("POST", "/v1/backups", {
    timeoutMs: 0,
    accept: "application/x-ndjson",
    ...(maxRate === undefined ? {} : { json: { max_rate: maxRate } }),
  });
  const progress = reportProgress(io, "backup");
  type Written = { path: string; bytes: number; files: number; missing: { spool: number; blobs: number } };
  let result = null as Written | null;
  let error: string | null = null;
  const decoder = new TextDecoder();
  let partial = "";
  for await (const chunk of res.body!) {
    const parts = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = parts.pop()!;
    for (const p of parts) {
      if (!p.trim()) continue;
      const line = JSON.parse(p) as { progress?: BackupProgress; backup?: Written; error?: string };
      if (line.progress) progress(line.progress);
      if (line.backup) result = line.backup;
      if (line.error) error = line.error;
    }
  }
  if (error || !result) throw new CommandFailure(error ?? "the server ended the backup without a result", EXIT.failed);
  if (dest) moveFile(result.path, dest);
  return { ...result, path: dest ?? result.path };
}

const backupCommand: Command = {
  name: ["backup"],
  summary: "take a backup of the data dir (online), or --verify one",
  help: `Usage: agentowl backup [--max-rate MIB] [FILE]
       agentowl backup --verify FILE

Writes one archive (tar) of the data dir while the appliance keeps serving: a consistent snapshot
of the database (SQLite VACUUM INTO, on a worker thread), the spool segments and attachment blobs
it refers to, the audit checkpoints, the settings file, the TLS pair and the audit key, with a
manifest of every file's SHA-256 and size first. Progress goes to stderr.

When a server holds the data dir, the backup is taken by it (POST /v1/backups: an admin token is
needed) into backup_dir and then moved to FILE; otherwise this command takes it itself, holding
the data dir's lock meanwhile. Without FILE the archive stays in backup_dir
(agentowl-YYYYMMDDTHHMMSSZ.tar).

--max-rate MIB caps the MiB per second the archive is written at (0: no cap). The server's
backups default to backup_max_rate, so that ingest keeps most of the disk; one taken by this
command with no server running goes at full speed unless --max-rate is given.

The archive is not encrypted: vault secrets are in it sealed under the master key, which is NOT in
it. Keep the master key apart (docs/operations.md#backups).

--verify FILE checks an archive without restoring it: the manifest, every file's size and
SHA-256, nothing missing or extra, and the database's PRAGMA integrity_check.

Exit codes: 0 ok, 1 failed or the archive refused, 2 usage, 3 not found, 4 FILE exists or a
backup is already running, 5 not authenticated or not allowed.

${CONNECTION_HELP}`,
  options: { verify: { type: "string" }, "max-rate": { type: "string" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const verify = stringOpt(values, "verify");
    if (verify !== undefined) {
      if (positionals.length) throw new UsageError("--verify takes the one FILE");
      const file = resolve(io.cwd, verify);
      const manifest = (() => {
        try {
          return verifyArchive(file, { tmpDir: dirname(file), progress: progressLines(io, "verify") });
        } catch (e) {
          return refused(e);
        }
      })();
      io.out(
        `backup ${file} verified: ${describe(manifest)}${missingNote({ spool: manifest.missing.spool.length, blobs: manifest.missing.blobs.length })}\n`,
      );
      return EXIT.ok;
    }

    const maxRate = maxRateOf(values);
    const config = loadConfig({ env: io.env, cwd: io.cwd, compiled: isCompiledBinary() });
    const dest = positionals[0] !== undefined ? resolve(io.cwd, positionals[0]) : null;
    if (dest && existsSync(dest)) throw new AppError("conflict", `${dest} exists; name another file`);
    if (!existsSync(join(config.dataDir, DATABASE_FILE)))
      throw new AppError("not_found", `no database in ${config.dataDir}: nothing to back up`);
    let lock: { release(): void } | null = null;
    try {
      lock = lockDataDir(config.dataDir);
    } catch (e) {
      if (!(e instanceof AppError && e.kind === "conflict")) throw e;
    }
    let r: { path: string; bytes: number; files: number; missing: { spool: number; blobs: number } };
    if (lock) {
      try {
        process.umask(0o077);
        const target = dest ?? join(config.backup.dir, archiveName(systemClock.now()));
        mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
        r = await createBackup({
          dataDir: config.dataDir,
          masterKeyFile: config.masterKeyFile,
          dest: target,
          // Nothing else runs on the data dir: full speed unless asked otherwise.
          maxBytesPerSecond: (maxRate ?? 0) * 2 ** 20,
          onProgress: reportProgress(io, "backup"),
        });
      } finally {
        lock.release();
      }
    } else r = await backupThroughServer(values, io, dest, maxRate);
    io.out(`backup written to ${r.path}: ${mib(r.bytes)}, ${r.files} files${missingNote(r.missing)}\n`);
    return EXIT.ok;
  },
};

const restoreCommand: Command = {
  name: ["restore"],
  summary: "restore a backup into the data dir (the server stopped)",
  help: `Usage: agentowl restore FILE [--data-dir DIR]

Restores a backup archive into the data dir (DIR, else the configured one). Refused while a server
holds the data dir: stop it first. Every file's checksum is verified as the archive is extracted
into a temp folder beside the data dir, and the database's integrity checked; only then are the
two swapped in one rename. A restore interrupted before that leaves the data dir as it was. The
data dir that was replaced is kept beside it (DIR.before-restore-TIME) until you remove it; its
master key and backups/ are carried over.

The master key is not in the archive: restoring onto a new machine, put the master key you kept
apart at master_key_file (default DIR/master.key, mode 0600) before 'agentowl serve'.

Exit codes: 0 restored, 1 failed or the archive refused, 2 usage, 3 FILE not found, 4 a server
holds the data dir or the backup is newer than this binary.`,
  options: { "data-dir": { type: "string" } },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    if (positionals[0] === undefined) throw new UsageError("name the backup FILE to restore");
    const archive = resolve(io.cwd, positionals[0]);
    const flag = stringOpt(values, "data-dir");
    const config = flag ? null : loadConfig({ env: io.env, cwd: io.cwd, compiled: isCompiledBinary() });
    const dataDir = flag ? resolve(io.cwd, flag) : config!.dataDir;
    process.umask(0o077);
    let r;
    try {
      r = restoreArchive({ archive, dataDir, progress: progressLines(io, "restore") });
    } catch (e) {
      return refused(e);
    }
    const keyFile = config?.masterKeyFile ?? join(dataDir, "master.key");
    io.out(
      `restored ${archive} into ${r.dataDir}: ${describe(r.manifest)}\n` +
        (r.previous ? `the data dir it replaced is kept at ${r.previous}: remove it once the appliance serves\n` : "") +
        (existsSync(keyFile)
          ? ""
          : `no master key at ${keyFile}: put the one you kept apart there (mode 0600) before 'agentowl serve'\n`),
    );
    return EXIT.ok;
  },
};

export const BACKUP_COMMANDS: readonly Command[] = [backupCommand, restoreCommand];
