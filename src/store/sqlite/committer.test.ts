import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../../core/clock.ts";
import { kv } from "../schema/index.ts";
import { openDatabase } from "../sqlite.ts";
import { migrate } from "../migrate.ts";
import { tempStorages, until } from "../../../test/helpers/storage.ts";
import { BACKSTOP_PAGES } from "./checkpointer.ts";
import { SqliteCommitter } from "./committer.ts";

/**
 * The committer with `durable`: COMMIT writes the WAL (synchronous=NORMAL), a group fdatasync of
 * the WAL file makes it durable, and nobody is answered before that.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A committer whose syncs the test finishes by hand. */
function manualSync() {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-committer-"));
  dirs.push(dir);
  const handle = openDatabase(join(dir, "t.db"), { syncWal: false });
  migrate(handle.sqlite);
  const syncs: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const commits: number[] = [];
  const committer = new SqliteCommitter(handle.sqlite, handle.db, {
    windowMs: 0,
    maxBatch: 1000,
    clock: systemClock,
    onCommit: (units) => commits.push(units),
    durable: () => new Promise<void>((resolve, reject) => syncs.push({ resolve, reject })),
  });
  const put = (key: string) =>
    committer.run((tx) => {
      tx.db.insert(kv).values({ key, value: key, updatedAt: tx.now }).run();
      return key;
    });
  const stored = (key: string) => handle.db.select().from(kv).all().some((r) => r.key === key);
  return { handle, committer, syncs, commits, put, stored };
}

const turn = () => new Promise((r) => setImmediate(r));

describe("SqliteCommitter with a WAL sync of its own", () => {
  test("a caller is answered only after the sync that follows its commit", async () => {
    const c = manualSync();
    let answered = false;
    const p = c.put("a").then((v) => ((answered = true), v));
    await turn();
    expect(c.commits).toEqual([1]);
    expect(c.stored("a")).toBe(true); // committed (visible) …
    await turn();
    expect(answered).toBe(false); // … but not yet answered: the disk has not confirmed it
    c.syncs[0]!.resolve();
    expect(await p).toBe("a");
    await c.committer.close();
    c.handle.sqlite.close();
  });

  test("work that arrives during a sync is gathered into one commit when it ends", async () => {
    const c = manualSync();
    const first = c.put("a");
    await turn();
    const more = ["b", "c", "d"].map((k) => c.put(k));
    await turn();
    await turn();
    expect(c.commits).toEqual([1]); // held back while the disk syncs
    c.syncs[0]!.resolve();
    await first;
    for (let i = 0; i < 5 && c.commits.length < 2; i++) await turn();
    expect(c.commits).toEqual([1, 3]);
    c.syncs[1]!.resolve();
    expect(await Promise.all(more)).toEqual(["b", "c", "d"]);
    await c.committer.close();
    c.handle.sqlite.close();
  });

  test("a failed sync fails its callers with a storage error; later work goes on", async () => {
    const c = manualSync();
    const p = c.put("a");
    await turn();
    c.syncs[0]!.reject(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    const err = await p.then(
      () => null,
      (e: unknown) => e as { kind?: string; message: string },
    );
    expect(err?.message).toMatch(/EIO|write-ahead log/);
    const q = c.put("b");
    await turn();
    c.syncs[1]!.resolve();
    expect(await q).toBe("b");
    await c.committer.close();
    c.handle.sqlite.close();
  });

  test("close waits for the sync of the last commit", async () => {
    const c = manualSync();
    const p = c.put("a");
    await turn();
    let closed = false;
    const closing = c.committer.close().then(() => (closed = true));
    await turn();
    expect(closed).toBe(false);
    c.syncs[0]!.resolve();
    await closing;
    expect(await p).toBe("a");
    c.handle.sqlite.close();
  });
});

describe("the appliance's storage", () => {
  const storage = tempStorages();

  test("runs the WAL with synchronous=NORMAL and fdatasyncs it itself before answering", async () => {
    const s = storage();
    expect(s.handle.sqlite.query<{ synchronous: number }, []>("PRAGMA synchronous").get()!.synchronous).toBe(1);
    expect(existsSync(`${s.handle.path}-wal`)).toBe(true);
    const before = s.walSyncs;
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.committer.run((tx) => tx.emit({ topic: "t", payload: i }))));
    // Every one answered, so at least one fdatasync ran after their commit; 20 callers shared few.
    expect(s.walSyncs).toBeGreaterThan(before);
    expect(s.walSyncs - before).toBeLessThanOrEqual(3);
  });
});

describe("WAL checkpoints in the background", () => {
  const storage = tempStorages();

  test("a worker thread checkpoints the WAL; the committing connection keeps only a far backstop; close ends both", async () => {
    const s = storage();
    const autocheckpoint = () => s.handle.sqlite.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;
    expect(autocheckpoint()).toBe(1000);
    const errors: string[] = [];
    const ck = s.checkpointInBackground((m) => errors.push(m), 20);
    expect(autocheckpoint()).toBe(BACKSTOP_PAGES);
    for (let b = 0; b < 20; b++) await Promise.all(Array.from({ length: 50 }, (_, i) => s.committer.run((tx) => tx.emit({ topic: "t", payload: { pad: "x".repeat(500), i } }))));
    // The worker copied every frame of the WAL into the database (PASSIVE: without the writer's help).
    await until("checkpointed", () => (ck.last?.frames ?? 0) > 100 && ck.last!.copied === ck.last!.frames, 5000);
    expect(errors).toEqual([]);
    const path = s.handle.path;
    await s.close();
    // The worker stopped first: the closing checkpoint could copy everything and truncate the WAL.
    expect(existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0).toBe(0);
  });
});
