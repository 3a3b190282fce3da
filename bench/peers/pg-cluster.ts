/**
 * A throw-away PostgreSQL cluster for the benchmarks: Debian's initdb/pg_ctl under a temp dir on a
 * free port, as an unprivileged user when run as root. Unlike the tests' cluster
 * (test/helpers/postgres.ts, fsync off) it is durable: fsync on, synchronous_commit on, full page
 * writes, so a commit is acknowledged once its WAL is flushed to the disk, what the driver's
 * guarantee requires and what a benchmark of durable queues must pay.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { freePort } from "../common.ts";

export interface BenchCluster {
  version: string;
  /** A new empty database; its URL. */
  database(name: string): Promise<string>;
  stop(): void;
}

function findBin(name: string): string | null {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  const v = readdirSync(base)
    .filter((d) => existsSync(join(base, d, "bin", name)))
    .sort((a, b) => Number(b) - Number(a))[0];
  return v ? join(base, v, "bin", name) : null;
}

export async function startCluster(): Promise<BenchCluster> {
  const initdb = findBin("initdb");
  const pgCtl = findBin("pg_ctl");
  if (!initdb || !pgCtl) throw new Error("no PostgreSQL: install Debian's postgresql (initdb, pg_ctl)");
  const dir = mkdtempSync(join(tmpdir(), "agentowl-bench-pg-"));
  const asUser: string[] = [];
  if (process.getuid?.() === 0) {
    const user = spawnSync("id", ["-u", "postgres"]).status === 0 ? "postgres" : "nobody";
    const uid = Number(spawnSync("id", ["-u", user], { encoding: "utf8" }).stdout);
    const gid = Number(spawnSync("id", ["-g", user], { encoding: "utf8" }).stdout);
    chownSync(dir, uid, gid);
    asUser.push("setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups");
  }
  chmodSync(dir, 0o700);
  const run = (cmd: string[]) => {
    const argv = asUser.length ? [...asUser, ...cmd] : cmd;
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr || r.stdout}`);
  };
  const data = join(dir, "data");
  run([initdb, "-D", data, "-A", "trust", "-U", "agentowl", "-E", "UTF8", "--no-locale"]);
  const port = await freePort();
  const options = [
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=300`,
    "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=256MB",
  ].join(" ");
  run([pgCtl, "-D", data, "-o", options, "-l", join(dir, "log"), "-w", "-t", "60", "start"]);
  const admin = new SQL(`postgres://agentowl@127.0.0.1:${port}/postgres`, { max: 1 });
  const [shown] = (await admin.unsafe("SHOW server_version")) as { server_version: string }[];
  const version = shown?.server_version ?? "?";
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    void admin.close({ timeout: 0 }).catch(() => {});
    const argv = [...asUser, pgCtl, "-D", data, "-m", "fast", "stop"];
    spawnSync(argv[0]!, argv.slice(1));
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", stop);
  return {
    version,
    async database(name: string) {
      await admin.unsafe(`CREATE DATABASE ${name}`);
      return `postgres://agentowl@127.0.0.1:${port}/${name}`;
    },
    stop,
  };
}
