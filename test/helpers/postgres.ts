/**
 * A PostgreSQL server for tests. `AGENTOWL_TEST_PG` names one (a URL whose user may create
 * databases); otherwise the first call starts a throw-away cluster for this test run with Debian's
 * initdb/pg_ctl under a temp dir on a free port (as the `postgres` or `nobody` user when run as
 * root: PostgreSQL refuses to run as root), stopped by the test file's afterAll (the next file starts
 * another) or when the process exits. Each `freshDatabase()`
 * is a new, empty database on it. Without either, `testPostgres()` says why and tests skip.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";

export interface TestPostgres {
  /** A URL of the server's maintenance database (for CREATE DATABASE). */
  adminUrl: string;
  /** A new empty database; its URL. Dropped by `drop`. */
  freshDatabase(): Promise<string>;
  drop(url: string): Promise<void>;
  /** Stop the cluster this run started (nothing for AGENTOWL_TEST_PG's server); call it in afterAll. */
  stop(): Promise<void>;
}

let started: Promise<TestPostgres | string> | null = null;

/** The server for this test run, or the reason there is none (print it and skip). */
export function testPostgres(): Promise<TestPostgres | string> {
  started ??= start();
  return started;
}

function findBin(name: string): string | null {
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, "bin", name)))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], "bin", name);
  }
  const which = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return which.status === 0 ? which.stdout.trim() : null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function start(): Promise<TestPostgres | string> {
  const given = process.env.AGENTOWL_TEST_PG;
  if (given) return server(given);
  const initdb = findBin("initdb");
  const pgCtl = findBin("pg_ctl");
  if (!initdb || !pgCtl) return "no PostgreSQL: set AGENTOWL_TEST_PG or install postgresql (initdb, pg_ctl)";
  const dir = mkdtempSync(join(tmpdir(), "agentowl-pg-"));
  // PostgreSQL refuses to run as root: the cluster belongs to an unprivileged user then.
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
    const r = spawnSync(asUser[0] ?? cmd[0]!, [...asUser.slice(1), ...(asUser.length ? cmd : cmd.slice(1))], {
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr || r.stdout}`);
  };
  const data = join(dir, "data");
  run([initdb, "-D", data, "-A", "trust", "-U", "agentowl", "--no-sync", "-E", "UTF8", "--no-locale"]);
  const port = await freePort();
  // fsync off: a test cluster need not survive the machine; the driver's own settings are what is tested.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  run([pgCtl, "-D", data, "-o", options, "-l", join(dir, "log"), "-w", "-t", "60", "start"]);
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    const args = [...asUser.slice(1), ...(asUser.length ? [pgCtl] : []), "-D", data, "-m", "immediate", "stop"];
    spawnSync(asUser[0] ?? pgCtl, args);
    rmSync(dir, { recursive: true, force: true });
  };
  // bun test may end without an "exit" event: the test file's afterAll calls stop() as well.
  process.once("exit", stop);
  return server(`postgres://agentowl@127.0.0.1:${port}/postgres`, stop);
}

function server(adminUrl: string, stopCluster: () => void = () => {}): TestPostgres {
  let n = 0;
  const admin = new SQL(adminUrl, { max: 2 });
  return {
    adminUrl,
    async freshDatabase() {
      const name = `agentowl_test_${process.pid}_${Date.now().toString(36)}_${n++}`;
      await admin.unsafe(`CREATE DATABASE ${name}`);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async drop(url: string) {
      const name = new URL(url).pathname.slice(1);
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
    async stop() {
      // The cluster first: closing the client can wait for the run's end, which is what calls this.
      stopCluster();
      // The next test file of this run (bun test runs them in one process) starts a cluster of its own.
      started = null;
      void admin.close({ timeout: 0 }).catch(() => {});
    },
  };
}
