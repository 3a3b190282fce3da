import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkpointFile } from "../audit/anchor.ts";
import { auditKeyPath, loadChainKeys } from "../audit/keys.ts";
import { loadConfig } from "../config/index.ts";
import { AppError } from "../errors/index.ts";
import {
  BlobStore,
  type ChainKeys,
  DATABASE_FILE,
  lockDataDir,
  openSqliteStorage,
  postgresDriver,
  toPostgres,
  type Storage,
  type VerifyReport,
} from "../store/index.ts";
import { loadMasterKey, masterKeySource } from "../vault/crypto.ts";
import { isCompiledBinary } from "../version.ts";
import { type Command, type CommandIO, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";

/** `agentowl store migrate --to postgres://…` (docs/operations.md#moving-to-postgresql). */

const POSTGRES_URL = /^postgres(ql)?:\/\/\S+$/;

/** The URL without its password, for messages. */
export const redactUrl = (url: string): string => {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "the given URL";
  }
};

/** Progress on stderr: a line per table, then one per second while a large table is copied. */
function progress(io: CommandIO): (p: { table: string; done: number; total: number }) => void {
  let table = "";
  let lastAt = 0;
  return ({ table: t, done, total }) => {
    const now = performance.now();
    const first = t !== table;
    if (!first && done < total && now - lastAt < 1000) return;
    if (!first && done === 0) return;
    table = t;
    lastAt = now;
    if (first && done === 0) io.err(`copy ${t}: ${total} ${t === "blobs" ? "blobs" : "rows"}\n`);
    else if (done > 0) io.err(`copy ${t}: ${done} of ${total}${done === total ? " done" : ""}\n`);
  };
}

/**
 * The audit chain's keys as the appliance on this data dir uses them, or null for a log that was
 * never keyed (no audit key yet): verify then checks the plain links. Never writes a key.
 */
function chainKeys(masterKeyFile: string, env: Record<string, string | undefined>): ChainKeys | null {
  const source = masterKeySource(masterKeyFile, env);
  if (!source.credential && !existsSync(auditKeyPath(masterKeyFile))) return null;
  return loadChainKeys({
    masterKeyFile,
    master: loadMasterKey(source.path),
    credential: source.credential,
  }).keys;
}

/**
 * The audit log's verify on `storage`, anchored to a copy of the data dir's checkpoint file, so
 * that checking never writes to the data dir.
 */
async function verifyAudit(storage: Storage, dataDir: string, keys: ChainKeys | null): Promise<VerifyReport> {
  if (!keys) return storage.audit.verify();
  const tmp = mkdtempSync(join(tmpdir(), "agentowl-migrate-"));
  try {
    const file = join(tmp, "checkpoints.jsonl");
    if (existsSync(checkpointFile(dataDir))) copyFileSync(checkpointFile(dataDir), file);
    storage.audit.anchor({ keys, file, everyEntries: Number.MAX_SAFE_INTEGER, everyMs: 0 });
    return await storage.audit.verify();
  } finally {
    await storage.audit.closeAnchor().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
}

const migrateCommand: Command = {
  name: ["store", "migrate"],
  summary: "copy a stopped appliance's SQLite data into an empty PostgreSQL database",
  help: `Usage: agentowl store migrate --to postgres://USER:PASSWORD@HOST:PORT/DATABASE

Copies the data dir's SQLite database (DIR/agentowl.db) into an empty PostgreSQL database: every
table row for row (resources and their history, tokens, users and sessions, events, deliveries
and attempts, approvals, the outbox and its cursors, jobs, mail, the agent pool's rows, kv, the
vault's secrets sealed as they are, the audit log with its hash chain as it is), then the
attachment blobs and the spool's raw mail into the database, where every node reads them, and the
signed audit checkpoints into the table every node anchors to. Progress goes to stderr. Then it checks that every table holds as many rows on both
sides and verifies the audit chain on PostgreSQL against the data dir's signed checkpoints.

The appliance must be stopped: refused while a server holds the data dir (its lock is held for
the whole copy). The database must be empty (a new one: CREATE DATABASE agentowl): refused when
it holds agentowl data or other tables. The copy commits in one transaction, so a copy that
fails leaves the database empty and can be run again. The SQLite database is only read.

To switch, set database_url (agentowl.toml) or AGENTOWL_DATABASE_URL to the same URL and start
'agentowl serve' on the same data dir: the master key, the audit key and checkpoints, the TLS
pair and the spool stay there.

Exit codes: 0 migrated and verified, 1 failed or the check found a difference, 2 usage,
3 no database in the data dir, 4 a server holds the data dir or the database is not empty.`,
  options: { to: { type: "string" } },
  async run({ values }, io) {
    const { copyCheckpoints, copyFiles, copyTables, notEmptyReason } = await toPostgres();
    const url = stringOpt(values, "to");
    if (!url) throw new UsageError("name the PostgreSQL database: --to postgres://USER:PASSWORD@HOST:PORT/DATABASE");
    if (!POSTGRES_URL.test(url)) throw new UsageError("--to takes a postgres:// or postgresql:// URL");
    const config = loadConfig({ env: io.env, cwd: io.cwd, compiled: isCompiledBinary() });
    const dataDir = config.dataDir;
    const dbFile = join(dataDir, DATABASE_FILE);
    if (!existsSync(dbFile)) throw new AppError("not_found", `no database in ${dataDir}: nothing to migrate`);
    let lock: { release(): void };
    try {
      lock = lockDataDir(dataDir);
    } catch (e) {
      if (e instanceof AppError && e.kind === "conflict")
        throw new CommandFailure(
          `a server holds the data dir ${dataDir}: stop it first (systemctl stop agentowl), then migrate`,
          EXIT.conflict,
        );
      throw e;
    }
    const shown = redactUrl(url);
    try {
      let reason: string | null;
      try {
        reason = await notEmptyReason(url);
      } catch (e) {
        throw new CommandFailure(`cannot reach ${shown}: ${(e as Error).message}`, EXIT.failed);
      }
      if (reason)
        throw new CommandFailure(
          `refused: the PostgreSQL database ${shown} is not empty: ${reason}. Migrate into a new, empty database (CREATE DATABASE …)`,
          EXIT.conflict,
        );
      const keys = chainKeys(config.masterKeyFile, io.env);
      const t0 = performance.now();
      io.err(`migrating ${dbFile} into ${shown}\n`);
      // Opening creates the schema (the driver's migrations), as a node starting on it would.
      const target = postgresDriver().openPostgresStorage({ dir: dataDir, url });
      let report: VerifyReport;
      let counts;
      let files;
      try {
        counts = await copyTables(dbFile, url, { onProgress: progress(io) });
        if (!target.spool) throw new Error("the PostgreSQL storage has no spool");
        files = await copyFiles(
          dbFile,
          new BlobStore(join(dataDir, "blobs")),
          target.blobs,
          join(dataDir, "spool"),
          target.spool,
          progress(io),
        );
        await copyCheckpoints(url, checkpointFile(dataDir));
        io.err("verifying the audit chain on PostgreSQL\n");
        report = await verifyAudit(target, dataDir, keys);
      } finally {
        await target.close();
      }
      const lines = counts.map(
        (c) =>
          `  ${c.table.padEnd(18)} ${String(c.sqlite).padStart(9)} ${String(c.postgres).padStart(9)}${c.sqlite === c.postgres ? "" : "  DIFFERENT"}`,
      );
      io.out(`rows per table (SQLite, PostgreSQL):\n${lines.join("\n")}\n`);
      io.out(
        `blobs: ${files.blobs.referenced} referenced, ${files.blobs.copied} copied, ${files.blobs.present} already there` +
          `${files.blobs.missing.length ? `, ${files.blobs.missing.length} already gone (pruned)` : ""}\n` +
          `spool: ${files.spool.segments} segments (${files.spool.bytes} bytes of mail) copied into the database` +
          `${files.spool.missing.length ? `; ${files.spool.missing.length} already gone or short (pruned)` : ""}\n`,
      );
      const different = counts.filter((c) => c.sqlite !== c.postgres);
      if (different.length)
        throw new CommandFailure(
          `the copy differs: ${different.map((c) => `${c.table} ${c.sqlite} rows on SQLite, ${c.postgres} on PostgreSQL`).join("; ")}`,
          EXIT.failed,
        );
      if (!report.ok) {
        // Was it so before? The same check on the source says whether the copy broke it.
        const source = openSqliteStorage({ dir: dataDir });
        let before: VerifyReport;
        try {
          before = await verifyAudit(source, dataDir, keys);
        } finally {
          await source.close();
        }
        throw new CommandFailure(
          `the audit chain does not verify on PostgreSQL: ${report.problem}` +
            (before.ok ? " (it verifies on SQLite: the copy is wrong)" : " (it was so on SQLite already)"),
          EXIT.failed,
        );
      }
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      io.out(
        `audit log intact on PostgreSQL: ${report.entries} entries, head ${report.head}` +
          `${report.checkpoint ? ` (checkpoint at entry ${report.checkpoint.seq})` : ""}${keys ? "" : " (plain links: the log was never keyed)"}\n` +
          `migrated in ${secs} s. To switch: set database_url = "${shown}" in agentowl.toml (or ` +
          `AGENTOWL_DATABASE_URL) and start 'agentowl serve' on the same data dir (${dataDir}).\n` +
          `${DATABASE_FILE} is left as it was: the way back, until the appliance writes on PostgreSQL.\n`,
      );
      return EXIT.ok;
    } finally {
      lock.release();
    }
  },
};

export const STORE_COMMANDS: readonly Command[] = [migrateCommand];
