import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderEmbeddedMigrations } from "../../scripts/embed-migrations.ts";
import journal from "../../migrations/meta/_journal.json" with { type: "json" };
import { migrate, SCHEMA_VERSION } from "./migrate.ts";
import { embeddedMigrations } from "./migrations.generated.ts";
import { openDatabase } from "./sqlite.ts";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
function freshDb() {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-migrate-"));
  dirs.push(dir);
  return openDatabase(join(dir, "agentowl.db")).sqlite;
}
const tables = (db: Database) =>
  db
    .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .all()
    .map((r) => r.name);

describe("migrations", () => {
  test("the binary embeds exactly the migrations drizzle-kit generated", () => {
    const generated = readFileSync(join(import.meta.dir, "migrations.generated.ts"), "utf8");
    expect(generated, "run `npm run db:generate`").toBe(renderEmbeddedMigrations(journal.entries));
    expect(embeddedMigrations.map((m) => m.tag)).toEqual(journal.entries.map((e) => e.tag));
    for (const m of embeddedMigrations)
      expect(m.sql).toBe(readFileSync(join(import.meta.dir, `../../migrations/${m.tag}.sql`), "utf8"));
  });

  test("apply once, record the schema version, and change nothing the second time", () => {
    const db = freshDb();
    expect(migrate(db)).toEqual({ applied: embeddedMigrations.map((m) => m.tag), version: SCHEMA_VERSION });
    expect(tables(db)).toContain("jobs");
    expect(db.query<{ user_version: number }, []>("PRAGMA user_version").get()!.user_version).toBe(SCHEMA_VERSION);
    expect(migrate(db)).toEqual({ applied: [], version: SCHEMA_VERSION });
  });

  test("checking an up-to-date database writes nothing: a start on an existing data dir waits for no fsync", () => {
    const db = freshDb();
    migrate(db);
    const dataVersion = () => db.query<{ data_version: number }, []>("PRAGMA data_version").get()!.data_version;
    const changes = () => db.query<{ n: number }, []>("SELECT total_changes() AS n").get()!.n;
    const wal = `${db.filename}-wal`;
    const walBytes = () => Bun.file(wal).size;
    const [v, c, w] = [dataVersion(), changes(), walBytes()];
    expect(migrate(db)).toEqual({ applied: [], version: SCHEMA_VERSION });
    expect([dataVersion(), changes(), walBytes()]).toEqual([v, c, w]);
  });

  test("the database is opened in WAL mode with synchronous=FULL and foreign keys on", () => {
    const db = freshDb();
    expect(db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()!.journal_mode).toBe("wal");
    expect(db.query<{ synchronous: number }, []>("PRAGMA synchronous").get()!.synchronous).toBe(2);
    expect(db.query<{ foreign_keys: number }, []>("PRAGMA foreign_keys").get()!.foreign_keys).toBe(1);
  });

  test("a failing migration leaves the database exactly as it was", () => {
    const db = freshDb();
    const broken = [
      { idx: 0, tag: "0000_ok", sql: "CREATE TABLE a (x);--> statement-breakpoint\nCREATE TABLE b (y);" },
      {
        idx: 1,
        tag: "0001_broken",
        sql: "CREATE TABLE c (z);--> statement-breakpoint\nINSERT INTO nowhere VALUES (1);",
      },
    ];
    expect(() => migrate(db, broken)).toThrow(/migration 0001_broken failed: .*no such table: nowhere.*left unchanged/);
    expect(tables(db)).toEqual([]);
  });

  test("0009: deliveries being retried, once called failed, are retrying; the others keep their state", () => {
    const db = freshDb();
    const i = embeddedMigrations.findIndex((m) => m.tag === "0009_delivery_retrying");
    expect(i).toBeGreaterThan(0);
    migrate(db, embeddedMigrations.slice(0, i));
    db.run("PRAGMA foreign_keys = OFF");
    for (const [id, state] of [
      ["dlv_a", "failed"],
      ["dlv_b", "dead"],
      ["dlv_c", "delivered"],
    ]) {
      db.run(
        "INSERT INTO deliveries (id, event_id, tenant, endpoint, state, created_at, updated_at) VALUES (?, ?, 'beta', 'crm', ?, 0, 0)",
        [id!, `evt_${id}`, state!],
      );
    }
    db.run("PRAGMA foreign_keys = ON");
    expect(migrate(db).applied).toContain("0009_delivery_retrying");
    expect(db.query<{ id: string; state: string }, []>("SELECT id, state FROM deliveries ORDER BY id").all()).toEqual([
      { id: "dlv_a", state: "retrying" },
      { id: "dlv_b", state: "dead" },
      { id: "dlv_c", state: "delivered" },
    ]);
  });

  test("0017: delivery attempts keep their rows and ids without AUTOINCREMENT, and the next ids follow on", () => {
    const db = freshDb();
    const i = embeddedMigrations.findIndex((m) => m.tag === "0017_attempts_rowid");
    expect(i).toBeGreaterThan(0);
    migrate(db, embeddedMigrations.slice(0, i));
    db.run(
      "INSERT INTO events (id, tenant, type, channel, received_at, envelope, trace) VALUES ('evt_a', 'beta', 'webhook.received', 'webhook', 0, '{}', '[]')",
    );
    db.run(
      "INSERT INTO deliveries (id, event_id, tenant, endpoint, state, created_at, updated_at) VALUES ('dlv_a', 'evt_a', 'beta', 'crm', 'retrying', 0, 0)",
    );
    const attempt = db.query<never, [number, number]>(
      "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status) VALUES ('dlv_a', ?, ?, 5, 503)",
    );
    for (const n of [1, 2, 3]) attempt.run(n, n * 1000);
    db.run("DELETE FROM delivery_attempts WHERE attempt = 1");
    const before = db.query("SELECT * FROM delivery_attempts ORDER BY id").all();
    expect(before.map((r) => (r as { id: number }).id)).toEqual([2, 3]);

    expect(migrate(db).applied).toEqual(["0017_attempts_rowid", ...embeddedMigrations.slice(i + 1).map((m) => m.tag)]);
    expect(db.query("SELECT * FROM delivery_attempts ORDER BY id").all()).toEqual(before);
    const ddl = db.query<{ sql: string }, []>("SELECT sql FROM sqlite_master WHERE name = 'delivery_attempts'").get()!;
    expect(ddl.sql).not.toContain("AUTOINCREMENT");
    expect(db.query("SELECT name FROM sqlite_sequence WHERE name = 'delivery_attempts'").all()).toEqual([]);
    expect(db.query("PRAGMA index_list(delivery_attempts)").all()).toEqual([
      expect.objectContaining({ name: "delivery_attempts_delivery" }),
    ]);
    expect(db.query("PRAGMA foreign_key_list(delivery_attempts)").all()).toEqual([
      expect.objectContaining({ table: "deliveries", from: "delivery_id", to: "id", on_delete: "CASCADE" }),
    ]);
    attempt.finalize();
    db.run(
      "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status) VALUES ('dlv_a', 4, 4000, 5, 200)",
    );
    expect(db.query<{ id: number }, []>("SELECT max(id) AS id FROM delivery_attempts").get()!.id).toBe(4);
    // Still the child of its delivery: deleting the delivery deletes its attempts.
    db.run("DELETE FROM deliveries WHERE id = 'dlv_a'");
    expect(db.query("SELECT count(*) AS n FROM delivery_attempts").get()).toEqual({ n: 0 });
  });

  test("0019: jobs keep their rows and ids without AUTOINCREMENT; ids the sweep had purged at the top are not handed out again", () => {
    const db = freshDb();
    const i = embeddedMigrations.findIndex((m) => m.tag === "0019_jobs_rowid");
    expect(i).toBeGreaterThan(0);
    migrate(db, embeddedMigrations.slice(0, i));
    const job = db.query<never, [string, number]>(
      "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at, finished_at) VALUES ('t', 'null', ?, 5, 0, 0, ?)",
    );
    for (const n of [1, 2, 3, 4]) job.run(n <= 2 ? "available" : "done", n);
    // The sweep of the code before: the newest jobs, finished, are gone; AUTOINCREMENT remembers 4.
    db.run("DELETE FROM jobs WHERE state = 'done'");
    const before = db.query("SELECT * FROM jobs ORDER BY id").all();
    expect(before.map((r) => (r as { id: number }).id)).toEqual([1, 2]);

    expect(migrate(db).applied).toEqual(["0019_jobs_rowid", ...embeddedMigrations.slice(i + 1).map((m) => m.tag)]);
    const ddl = db.query<{ sql: string }, []>("SELECT sql FROM sqlite_master WHERE name = 'jobs'").get()!;
    expect(ddl.sql).not.toContain("AUTOINCREMENT");
    expect(db.query("SELECT name FROM sqlite_sequence WHERE name = 'jobs'").all()).toEqual([]);
    expect(db.query("SELECT * FROM jobs WHERE id <= 2 ORDER BY id").all()).toEqual(before);
    // The high-water mark, held by a finished job the sweep may take once a newer one exists.
    expect(db.query("SELECT id, kind, state FROM jobs WHERE id > 2").all()).toEqual([
      { id: 4, kind: "id.high_water", state: "done" },
    ]);
    expect(
      db
        .query("PRAGMA index_list(jobs)")
        .all()
        .map((x) => (x as { name: string }).name)
        .sort(),
    ).toEqual(["jobs_finished", "jobs_idempotency", "jobs_leased", "jobs_ready"]);
    job.finalize();
    db.run(
      "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at) VALUES ('t', 'null', 'available', 5, 0, 0)",
    );
    expect(db.query<{ id: number }, []>("SELECT max(id) AS id FROM jobs").get()!.id).toBe(5);
  });

  test("0019 on a database whose newest job is still there adds nothing", () => {
    const db = freshDb();
    const i = embeddedMigrations.findIndex((m) => m.tag === "0019_jobs_rowid");
    migrate(db, embeddedMigrations.slice(0, i));
    db.run(
      "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at) VALUES ('t', 'null', 'available', 5, 0, 0)",
    );
    migrate(db);
    expect(db.query("SELECT id, kind FROM jobs").all()).toEqual([{ id: 1, kind: "t" }]);
  });

  test("a database from a newer binary is refused", () => {
    const db = freshDb();
    migrate(db);
    db.run("INSERT INTO schema_migrations VALUES (?, 'future', 'x', 0)", [SCHEMA_VERSION]);
    expect(() => migrate(db)).toThrow(/schema version \d+, newer than this agentowl knows/);
  });

  test("an applied migration that differs from the binary's is refused", () => {
    const db = freshDb();
    migrate(db);
    db.run("UPDATE schema_migrations SET hash = 'tampered' WHERE idx = 0");
    expect(() => migrate(db)).toThrow(/differs from this binary's/);
  });
});
