import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { migrate, SCHEMA_VERSION } from "../store/index.ts";
import { restorePreUpgradeBackup, takePreUpgradeBackup } from "./upgrade-backup.ts";

const work = mkdtempSync(join(tmpdir(), "agentowl-upgrade-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const REPO = resolve(import.meta.dir, "../..");

function dataDir(name: string): { dir: string; db: Database } {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, "agentowl.db"));
  db.run("PRAGMA journal_mode = WAL");
  migrate(db);
  return { dir, db };
}

test("the pre-upgrade backup holds what the WAL held, and restoring it drops the newer database and its WAL", () => {
  const { dir, db } = dataDir("roundtrip");
  db.run("INSERT INTO kv (key, value, updated_at) VALUES ('marker', 'before', 0)");
  const backup = takePreUpgradeBackup(dir, "2.0.0");
  expect(backup).toBe(join(dir, "upgrade/pre-2.0.0.db"));
  // The newer binary writes on (into the WAL) and migrates past the older one.
  db.run("UPDATE kv SET value = 'after' WHERE key = 'marker'");
  db.run("INSERT INTO schema_migrations VALUES (?, 'future', 'x', 0)", [SCHEMA_VERSION]);
  db.close();
  writeFileSync(join(dir, "agentowl.db-wal"), "a WAL that must not be replayed into the restored database");
  restorePreUpgradeBackup(dir, backup);
  expect(existsSync(join(dir, "agentowl.db-wal"))).toBe(false);
  const restored = new Database(join(dir, "agentowl.db"));
  expect(restored.query("SELECT value FROM kv WHERE key = 'marker'").get()).toEqual({ value: "before" });
  expect(migrate(restored).applied).toEqual([]);
  restored.close();
});

test("serve refuses a database whose migration journal has an entry this binary does not know: exit 4, one clear line", () => {
  const { dir, db } = dataDir("newer");
  db.run("INSERT INTO schema_migrations VALUES (?, '9999_from_a_newer_agentowl', 'x', 0)", [SCHEMA_VERSION]);
  db.close();
  const p = Bun.spawnSync([join(REPO, "node_modules/.bin/bun"), join(REPO, "src/main.ts"), "serve"], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: work,
      AGENTOWL_DATA_DIR: dir,
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = p.stdout.toString() + p.stderr.toString();
  expect(p.exitCode, output).toBe(4);
  expect(output).toMatch(
    new RegExp(
      `schema version ${SCHEMA_VERSION + 1}, newer than this agentowl knows \\(${SCHEMA_VERSION}\\): run the newer binary or restore a backup`,
    ),
  );
});
