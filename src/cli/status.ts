import { lstatSync, readdirSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../config/index.ts";
import { DATABASE_FILE } from "../store/index.ts";
import { isCompiledBinary } from "../version.ts";
import type { Command } from "./command.ts";
import { CommandFailure, EXIT } from "./exit-codes.ts";

/** Bytes under a path (files, not following links); 0 when it does not exist. */
function du(path: string): number {
  let s: ReturnType<typeof lstatSync>;
  try {
    s = lstatSync(path);
  } catch {
    return 0;
  }
  if (!s.isDirectory()) return s.isFile() ? s.size : 0;
  let total = 0;
  for (const name of readdirSync(path)) total += du(join(path, name));
  return total;
}

/** What each kind of data takes in the data dir (docs/operations.md#disk). */
export function diskUseByKind(dataDir: string): Record<string, number> {
  const db = join(dataDir, DATABASE_FILE);
  return {
    database: du(db),
    wal: du(`${db}-wal`) + du(`${db}-shm`),
    spool: du(join(dataDir, "spool")),
    blobs: du(join(dataDir, "blobs")),
    audit: du(join(dataDir, "audit")),
    backups: du(join(dataDir, "backups")) + du(join(dataDir, "upgrade")),
    agents: du(join(dataDir, "agents")),
  };
}

const human = (n: number) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
};

export const statusCommand: Command = {
  name: ["status"],
  summary: "disk use of the data dir by kind, and the free space left",
  help: `Usage: agentowl status [--json]

Reads the data dir (AGENTOWL_DATA_DIR) directly, whether or not the server runs, and prints
what each kind of data takes: database, wal (its write-ahead log and index), spool (raw mail),
blobs (attachments), audit (the checkpoints), backups (backups/ and the pre-upgrade copies in
upgrade/), agents (the runtimes' work dirs); then the filesystem's free space and size.
With --json: {"data_dir", "kinds": {kind: bytes}, "free", "total"}.

Exit codes: 0 ok, 1 the data dir cannot be read.`,
  options: { json: { type: "boolean" } },
  async run({ values }, io) {
    const config = loadConfig({ env: io.env, cwd: io.cwd, compiled: isCompiledBinary() });
    let fs: ReturnType<typeof statfsSync>;
    try {
      fs = statfsSync(config.dataDir);
    } catch (e) {
      throw new CommandFailure(`cannot read the data dir ${config.dataDir}: ${(e as Error).message}`, EXIT.failed);
    }
    const kinds = diskUseByKind(config.dataDir);
    const free = fs.bavail * fs.bsize;
    const total = fs.blocks * fs.bsize;
    if (values.json) {
      io.out(`${JSON.stringify({ data_dir: config.dataDir, kinds, free, total })}\n`);
      return EXIT.ok;
    }
    const width = Math.max(...Object.keys(kinds).map((k) => k.length));
    const lines = Object.entries(kinds).map(([k, n]) => `  ${k.padEnd(width)}  ${human(n)}`);
    io.out(
      `data dir ${config.dataDir}\n${lines.join("\n")}\n` +
        `free ${human(free)} of ${human(total)} (${total ? ((100 * free) / total).toFixed(1) : 0}%)\n`,
    );
    return EXIT.ok;
  },
};
