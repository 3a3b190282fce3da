import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { DATABASE_FILE, referencedFiles, snapshotDatabase } from "../store/index.ts";
import { type Manifest, type Progress, type Source, FORMAT, type WriteOptions, writeArchive } from "./archive.ts";

/**
 * What a backup takes, in the order that keeps it consistent (docs/operations.md#backups), run
 * synchronously on the backup worker's thread (./worker.ts):
 *
 * 1. the audit checkpoints file, whole lines only, BEFORE the database: every checkpoint in it
 *    then names an entry the snapshot holds (a later checkpoint would make the restored chain
 *    look cut short);
 * 2. the database, `VACUUM INTO` a staging file (one read transaction: one commit's view);
 * 3. what that snapshot refers to: each spool segment up to the end of its last message (bytes
 *    acknowledged before the snapshot, never rewritten), each attachment blob (named by its
 *    SHA-256, never rewritten);
 * 4. the settings file, the TLS pair and the audit key, as they are.
 *
 * Not taken: the master key (kept apart by the admin), the WAL and SHM files (the snapshot holds
 * everything committed), the lock, the agents' runtime directories (re-created), backups/.
 */

export interface BackupRequest {
  dataDir: string;
  masterKeyFile: string;
  /** The archive to write. */
  dest: string;
  /** A directory of its own for the snapshot, removed at the end (beside `dest`: same disk). */
  staging: string;
  appVersion: string;
  createdAt: string;
  /** Bytes per second the archive is written at most (`backup_max_rate`); 0: no cap. */
  maxBytesPerSecond: number;
}

export interface BackupResult {
  path: string;
  bytes: number;
  files: number;
  schemaVersion: number;
  missing: { spool: number; blobs: number };
  createdAt: string;
  /** Milliseconds the writer slept to stay under `maxBytesPerSecond` (filled in by the worker). */
  pacedMs?: number;
}

export const ENCRYPTION_NOTE =
  "none for the archive; vault secrets are sealed under the master key, which is not in the archive";

/** Files besides the database that a restore needs, where they exist. */
function extras(dataDir: string, masterKeyFile: string): { path: string; file: string }[] {
  const out = [
    { path: "agentowl.toml", file: join(dataDir, "agentowl.toml") },
    { path: "tls/cert.pem", file: join(dataDir, "tls", "cert.pem") },
    { path: "tls/key.pem", file: join(dataDir, "tls", "key.pem") },
  ];
  // The audit key lives beside the master key; it belongs here only when that is the data dir.
  if (dirname(masterKeyFile) === dataDir) out.push({ path: "audit.key", file: join(dataDir, "audit.key") });
  return out.filter((e) => existsSync(e.file));
}

export function runBackup(
  req: BackupRequest,
  progress: Progress,
  phase: (name: string) => void = () => {},
  beforeWrite?: WriteOptions["beforeWrite"],
): BackupResult {
  const { dataDir, staging } = req;
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    const sources: Source[] = [];
    // Checksummed as they are archived (each file read once).
    const add = (path: string, file: string, size = statSync(file).size) => sources.push({ path, file, size });

    // 1. Checkpoints, whole lines, before the snapshot.
    const checkpoints = join(dataDir, "audit", "checkpoints.jsonl");
    let checkpointCopy: string | null = null;
    if (existsSync(checkpoints)) {
      const text = readFileSync(checkpoints);
      const end = text.lastIndexOf(0x0a) + 1;
      checkpointCopy = join(staging, "checkpoints.jsonl");
      writeFileSync(checkpointCopy, text.subarray(0, end), { mode: 0o600 });
    }

    // 2. The database.
    phase("snapshot");
    const db = join(staging, DATABASE_FILE);
    snapshotDatabase(join(dataDir, DATABASE_FILE), db);
    const refs = referencedFiles(db);
    add(DATABASE_FILE, db);
    if (checkpointCopy) add("audit/checkpoints.jsonl", checkpointCopy);

    // 4. Small files, copied first: one rewritten meanwhile cannot change under the archive.
    for (const e of extras(dataDir, req.masterKeyFile)) {
      const copy = join(staging, e.path.replaceAll("/", "_"));
      copyFileSync(e.file, copy);
      add(e.path, copy);
    }

    // 3. Spool segments and blobs the snapshot refers to.
    const missing = { spool: [] as string[], blobs: [] as string[] };
    for (const s of refs.segments) {
      const file = join(dataDir, "spool", s.name);
      const size = existsSync(file) ? statSync(file).size : -1;
      if (size < s.end) missing.spool.push(s.name);
      else add(`spool/${s.name}`, file, s.end);
    }
    for (const sha of refs.blobs) {
      const rel = `blobs/sha256/${sha.slice(0, 2)}/${sha}`;
      const file = join(dataDir, rel);
      if (!existsSync(file)) missing.blobs.push(sha);
      // Content-addressed: the name is the checksum, verified as the blob is copied.
      else sources.push({ path: rel, file, size: statSync(file).size, sha256: sha });
    }

    const { schemaVersion } = refs;
    const head: Omit<Manifest, "files"> = {
      format: FORMAT,
      format_version: 1,
      app_version: req.appVersion,
      schema_version: schemaVersion,
      created_at: req.createdAt,
      encryption: ENCRYPTION_NOTE,
      missing,
    };
    phase("archive");
    const { bytes } = writeArchive(req.dest, head, sources, { progress, beforeWrite });
    return {
      path: req.dest,
      bytes,
      files: sources.length,
      schemaVersion,
      missing: { spool: missing.spool.length, blobs: missing.blobs.length },
      createdAt: req.createdAt,
    };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
