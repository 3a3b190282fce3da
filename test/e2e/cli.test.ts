/**
 * The `agentowl` command line as an operator meets it: a real process, its exit code, its stdout
 * and its stderr. Every failure is one line on stderr and a documented exit code, never a stack.
 * Runs from source, or against the compiled binary with AGENTOWL_TEST_BINARY=dist/agentowl.
 */
import { Database } from "bun:sqlite";
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { COMMANDS } from "../../src/cli/index.ts";
import { SCHEMA_VERSION } from "../../src/store/index.ts";
import { embeddedMigrations } from "../../src/store/migrations.generated.ts";
import { killLeftovers, type RunResult, runAgentowl } from "../helpers/process.ts";

// bun test does not read `timeout` from bunfig.toml: the locked-database case waits out a 5 s busy timeout.
setDefaultTimeout(20_000);

const root = mkdtempSync(join(tmpdir(), "agentowl-cli-"));
afterEach(killLeftovers);
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fresh, not yet existing data dir. */
const dataDir = (): string => join(root, `data-${++n}`);

/** `agentowl <args>` with the working directory in a temp dir and these AGENTOWL_* variables. */
const agentowl = (args: string[], env: Record<string, string> = {}, timeoutMs?: number): Promise<RunResult> =>
  runAgentowl(args, { cwd: root, env, timeoutMs });

/** The failure is exactly one line on stderr, with no stack trace; returns it. */
function oneLine(r: RunResult): string {
  expect(r.stderr).not.toContain("    at ");
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr.endsWith("\n")).toBe(true);
  return lines[0]!;
}

const TOKEN = "bootstrap-8d1f0c6b2a9e4f7d3c5b1a0e";

describe("usage", () => {
  test("no arguments prints the usage on stdout and exits 2", async () => {
    const r = await agentowl([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toStartWith("Usage: agentowl <command>");
    for (const c of COMMANDS) expect(r.stdout).toContain(`  ${c.name.join(" ")} `);
    expect(r.stderr).toBe("");
  });

  test("--help prints the usage and exits 0", async () => {
    const r = await agentowl(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("Usage: agentowl <command>");
  });

  test("every command answers --help with its usage line, exit 0", async () => {
    const results = await Promise.all(COMMANDS.map((c) => agentowl([...c.name, "--help"])));
    COMMANDS.forEach((c, i) => {
      const r = results[i]!;
      expect(r.code, c.name.join(" ")).toBe(0);
      expect(r.stdout).toStartWith(`Usage: agentowl ${c.name.join(" ")}`);
      expect(r.stdout).toBe(c.help + "\n");
      expect(r.stderr).toBe("");
    });
  });

  test("'help config show' prints the help of 'config show'", async () => {
    const r = await agentowl(["help", "config", "show"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("Usage: agentowl config show");
  });

  test("an unknown command exits 2 with one line", async () => {
    const r = await agentowl(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe("agentowl: unknown command 'frobnicate' (see 'agentowl --help')");
    expect(r.stdout).toBe("");
  });

  test("an incomplete command group exits 2 and names the commands it has", async () => {
    const r = await agentowl(["config"]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toContain("agentowl config show");
  });

  test("an unknown option exits 2 with one line naming it", async () => {
    const r = await agentowl(["version", "--verbose"]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toContain("'--verbose'");
    expect(r.stderr).toContain("see 'agentowl version --help'");
  });

  test("an unexpected argument exits 2 with one line naming it", async () => {
    const r = await agentowl(["init", "now"]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe("agentowl init: unexpected argument 'now' (see 'agentowl init --help')");
  });
});

describe("version", () => {
  test("prints the version, commit, schema version and Bun on one line", async () => {
    const r = await agentowl(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `^agentowl \\d+\\.\\d+\\.\\d+ \\(commit \\S+, schema ${SCHEMA_VERSION}, bun \\d+\\.\\d+\\.\\d+, \\S+\\)\\n$`,
      ),
    );
  });

  test("--json is machine-readable", async () => {
    const r = await agentowl(["version", "--json"]);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info).toMatchObject({ schema_version: SCHEMA_VERSION });
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(typeof info.commit).toBe("string");
    expect(info.bun).toMatch(/^\d+\.\d+\.\d+/);
    // The compiled binary under test (AGENTOWL_TEST_BINARY) is built for this machine too.
    expect(info.target).toBe(`${process.platform}-${process.arch}`);
  });

  test("--version is 'version'", async () => {
    const [a, b] = await Promise.all([agentowl(["--version"]), agentowl(["version"])]);
    expect(a.stdout).toBe(b.stdout);
  });
});

describe("config show", () => {
  test("never prints the bootstrap token, as text or as JSON", async () => {
    const env = { AGENTOWL_DATA_DIR: dataDir(), AGENTOWL_BOOTSTRAP_TOKEN: TOKEN };
    const [text, json] = await Promise.all([
      agentowl(["config", "show"], env),
      agentowl(["config", "show", "--json"], env),
    ]);
    expect(text.code).toBe(0);
    expect(json.code).toBe(0);
    expect(text.stdout).toContain(`bootstrap_token = "********"  # AGENTOWL_BOOTSTRAP_TOKEN`);
    expect(JSON.parse(json.stdout).bootstrap_token).toBe("********");
    for (const r of [text, json]) expect(r.stdout + r.stderr).not.toContain(TOKEN);
  });

  test("an invalid setting exits 78 with one line naming the variable", async () => {
    const r = await agentowl(["config", "show"], { AGENTOWL_DATA_DIR: dataDir(), AGENTOWL_SHUTDOWN_TIMEOUT: "soon" });
    expect(r.code).toBe(78);
    expect(oneLine(r)).toStartWith(
      "agentowl config show: AGENTOWL_SHUTDOWN_TIMEOUT (environment): expected a duration",
    );
    expect(r.stdout).toBe("");
  });

  test("an invalid bootstrap token exits 78 without echoing it", async () => {
    const bad = "not a token but a secret";
    const r = await agentowl(["config", "show"], { AGENTOWL_DATA_DIR: dataDir(), AGENTOWL_BOOTSTRAP_TOKEN: bad });
    expect(r.code).toBe(78);
    expect(oneLine(r)).toContain("AGENTOWL_BOOTSTRAP_TOKEN");
    expect(r.stdout + r.stderr).not.toContain(bad);
  });

  test("a misspelt variable exits 78 and suggests the right one", async () => {
    const r = await agentowl(["serve"], { AGENTOWL_DATA_DIR: dataDir(), AGENTOWL_HTTP_LISTN: "127.0.0.1:0" });
    expect(r.code).toBe(78);
    expect(oneLine(r)).toBe(
      "agentowl serve: AGENTOWL_HTTP_LISTN: unknown setting (did you mean AGENTOWL_HTTP_LISTEN?)",
    );
  });
});

describe("init", () => {
  test("prepares a fresh data dir: master key 0600, settings, database, spool and blobs", async () => {
    const dir = dataDir();
    const r = await agentowl(["init"], { AGENTOWL_DATA_DIR: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(statSync(join(dir, "master.key")).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(join(dir, "master.key"), "utf8").trim(), "base64")).toHaveLength(32);
    for (const sub of ["spool", "blobs"]) expect(statSync(join(dir, sub)).isDirectory()).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(existsSync(join(dir, "agentowl.toml"))).toBe(true);
    expect(existsSync(join(dir, "agentowl.db"))).toBe(true);
    expect(r.stdout).toContain("(created, 0600)");
    expect(r.stdout).toContain(`database schema version ${SCHEMA_VERSION} (applied ${embeddedMigrations[0]!.tag}`);
  });

  test("run again, it keeps the master key and the database as they are", async () => {
    const dir = dataDir();
    expect((await agentowl(["init"], { AGENTOWL_DATA_DIR: dir })).code).toBe(0);
    const key = readFileSync(join(dir, "master.key"));
    const again = await agentowl(["init"], { AGENTOWL_DATA_DIR: dir });
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(dir, "master.key")).equals(key)).toBe(true);
    expect(again.stdout).toContain("(kept)");
    expect(again.stdout).toContain("(up to date)");
    expect(again.stdout).not.toContain("created");
  });

  test("a data dir that cannot be created exits 1 with one line naming the path", async () => {
    // Tests run as root, whom permission bits do not stop: a regular file in the path does.
    const file = join(root, `file-${++n}`);
    writeFileSync(file, "");
    const dir = join(file, "data");
    const r = await agentowl(["init"], { AGENTOWL_DATA_DIR: dir });
    expect(r.code).toBe(1);
    expect(oneLine(r)).toContain(dir);
  });

  test("a database newer than this binary is refused by init and serve with exit 4", async () => {
    const dir = dataDir();
    expect((await agentowl(["init"], { AGENTOWL_DATA_DIR: dir })).code).toBe(0);
    const db = new Database(join(dir, "agentowl.db"));
    db.run("INSERT INTO schema_migrations (idx, tag, hash, applied_at) VALUES (99, '0099_future', 'x', 0)");
    db.close();
    for (const command of ["init", "serve"]) {
      const r = await agentowl([command], {
        AGENTOWL_DATA_DIR: dir,
        AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
        AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      });
      expect(r.code, `${command}: ${r.stderr}`).toBe(4);
      expect(oneLine(r)).toContain("newer");
    }
  });

  test("a failed migration leaves the database exactly as it was", async () => {
    const dir = dataDir();
    mkdirSync(dir);
    // A table the first migration creates last, already there: the migration fails after it has
    // created all the others, and every one of them must be rolled back.
    const first = embeddedMigrations[0]!;
    const created = [...first.sql.matchAll(/CREATE TABLE `([a-z_]+)`/g)].map((m) => m[1]!);
    const conflicting = created.at(-1)!;
    expect(created.length).toBeGreaterThan(1);
    const before = new Database(join(dir, "agentowl.db"), { create: true });
    before.run(`CREATE TABLE ${conflicting} (x)`);
    before.close();

    const r = await agentowl(["init"], { AGENTOWL_DATA_DIR: dir });
    expect(r.code).toBe(1);
    expect(oneLine(r)).toContain(`migration ${first.tag} failed`);

    const after = new Database(join(dir, "agentowl.db"), { readonly: true });
    const tables = after
      .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'")
      .all()
      .map((t) => t.name);
    const migrations = tables.includes("schema_migrations") ? after.query("SELECT * FROM schema_migrations").all() : [];
    after.close();
    expect(tables).toEqual([conflicting]);
    expect(migrations).toEqual([]);
  });

  test("a database locked by another process fails within the busy timeout, exit 1, one line", async () => {
    const dir = dataDir();
    expect((await agentowl(["init"], { AGENTOWL_DATA_DIR: dir })).code).toBe(0);
    const holder = new Database(join(dir, "agentowl.db"));
    holder.run("BEGIN EXCLUSIVE");
    try {
      const r = await agentowl(["init"], { AGENTOWL_DATA_DIR: dir }, 10_000);
      expect(r.code, `after ${Math.round(r.ms)} ms: ${r.stderr}`).toBe(1);
      expect(r.ms).toBeLessThan(10_000);
      expect(oneLine(r)).toContain("locked");
    } finally {
      holder.run("ROLLBACK");
      holder.close();
    }
  });
});
