import type { RawRow } from "../store/sqlite/audit.ts";
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../core/log.ts";
import { openStorage, type Storage } from "../store/index.ts";
import { loadKeyring } from "../vault/crypto.ts";
import { Vault } from "../vault/vault.ts";
import { Redactor } from "../core/log.ts";
import { systemClock } from "../core/clock.ts";
import { anchorAuditLog, checkpointFile } from "./anchor.ts";
import { canonicalJson, type ChainKeys, entryHash, entryMac, GENESIS } from "../store/audit-chain.ts";
import { readCheckpoints } from "../store/audit-checkpoints.ts";
import { chainKeysFrom } from "./keys.ts";
import { until } from "../../test/helpers/storage.ts";

/**
 * The keyed, anchored audit chain (guarantee 10 (docs/guarantees.md)) against real files and a real database: what
 * someone who can write the database (but not read the audit key) can do to it, and that each
 * is reported, naming the first bad entry and the last good one.
 */

const KEYS = chainKeysFrom(Buffer.alloc(32, 7));
const WRONG = chainKeysFrom(Buffer.alloc(32, 8));
const dirs: string[] = [];
const open: Storage[] = [];

afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-anchor-"));
  dirs.push(dir);
  return dir;
}

/** A storage on `dir` whose chain is keyed and anchored, as the appliance opens it. */
function keyedStorage(
  dir: string,
  opts: { keys?: ChainKeys; everyEntries?: number; onCheckpoint?: (seq: number) => void } = {},
) {
  const s = openStorage({ dir });
  open.push(s);
  const state = s.audit.anchor({
    keys: opts.keys ?? KEYS,
    file: checkpointFile(dir),
    everyEntries: opts.everyEntries ?? 1000,
    everyMs: 0,
    onCheckpoint: (cp) => opts.onCheckpoint?.(cp.seq),
  });
  return Object.assign(s, { state });
}

async function fill(s: Storage, n: number, from = 0) {
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      s.audit.append({
        actor: "token:tok_1",
        tenant: "beta",
        action: "resource.update",
        target: `beta/endpoints/e${from + i}`,
        details: { i: from + i },
      }),
    ),
  );
}

/** A second connection, as an attacker with write access to the database file has; the append-only triggers dropped. */
function sideDoor(dir: string): Database {
  const db = new Database(join(dir, "agentowl.db"));
  db.run("DROP TRIGGER IF EXISTS audit_log_no_update");
  db.run("DROP TRIGGER IF EXISTS audit_log_no_delete");
  return db;
}

type Row = RawRow;

/** Change entry `seq`'s target and recompute its hash and every later one with `link`. */
function rewriteAndRehash(
  db: Database,
  seq: number,
  link: (prev: string, e: Row & { details: Record<string, unknown> }, details: string) => string,
) {
  db.run("UPDATE audit_log SET target = 'beta/endpoints/forged' WHERE seq = ?", [seq]);
  const rows = db.query<Row, [number]>("SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq").all(seq);
  let prev =
    db.query<{ hash: string }, [number]>("SELECT hash FROM audit_log WHERE seq = ?").get(seq - 1)?.hash ?? GENESIS;
  for (const r of rows) {
    const hash = link(prev, { ...r, details: JSON.parse(r.details) }, r.details);
    db.run("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", [prev, hash, r.seq]);
    prev = hash;
  }
}

const hashOf = (db: Database, seq: number) =>
  db.query<{ hash: string }, [number]>("SELECT hash FROM audit_log WHERE seq = ?").get(seq)!.hash;

/** Close (final checkpoint) and reopen: what verify sees after a restart. */
async function reopen(s: Storage, dir: string, keys: ChainKeys = KEYS) {
  await s.close();
  open.splice(open.indexOf(s), 1);
  return keyedStorage(dir, { keys });
}

describe("a keyed chain", () => {
  test("every entry's hash is an HMAC under the audit key, not a plain SHA-256", async () => {
    const dir = tempDir();
    const s = keyedStorage(dir);
    expect(s.state.kind).toBe("new");
    await fill(s, 3);
    const [e] = await s.audit.list({ limit: 1 });
    expect(e!.hash).toBe(entryMac(KEYS.entry, e!.prevHash, e!));
    expect(e!.hash).not.toBe(entryHash(e!.prevHash, e!));
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 3, keyed: true, problem: null });
  });

  test("a checkpoint is written every N committed entries and at close, never ahead of the table", async () => {
    const dir = tempDir();
    const seen: number[] = [];
    const s = keyedStorage(dir, { everyEntries: 10, onCheckpoint: (seq) => seen.push(seq) });
    for (let i = 0; i < 5; i++) await fill(s, 7, i * 7);
    // Each checkpoint names a committed head: its seq is at most the table's count at the time.
    expect(seen[0]).toBe(0);
    expect(seen.slice(1).every((seq) => seq >= 10)).toBe(true);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    await s.close();
    open.pop();
    const file = readCheckpoints(checkpointFile(dir), KEYS.checkpoint);
    expect(file.problem).toBeNull();
    expect(file.checkpoints.at(-1)!.seq).toBe(35);
    expect(statSync(checkpointFile(dir)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "audit")).mode & 0o777).toBe(0o700);
  });
});

describe("checkpoint timing", () => {
  test("with fewer than N new entries, the interval's timer checkpoints the committed head", async () => {
    const dir = tempDir();
    const s = openStorage({ dir });
    open.push(s);
    const seen: number[] = [];
    s.audit.anchor({
      keys: KEYS,
      file: checkpointFile(dir),
      everyEntries: 1000,
      everyMs: 20,
      onCheckpoint: (cp) => seen.push(cp.seq),
    });
    await fill(s, 3);
    await until("the timer's checkpoint", () => seen.includes(3), 5000);
    expect(seen).toEqual([0, 3]);
  });
});

describe("truncation and rewrites are reported, naming the last good entry", () => {
  for (const [removed, what] of [
    [1, "the last entry"],
    [100, "the last 100 entries"],
    [250, "every entry"],
  ] as const) {
    test(`deleting ${what} is reported as that many entries missing against the checkpoint`, async () => {
      const dir = tempDir();
      let s = keyedStorage(dir);
      await fill(s, 250);
      s = await reopen(s, dir); // the clean shutdown's checkpoint covers all 250
      const db = sideDoor(dir);
      const lastGood = 250 - removed;
      const lastGoodHash = lastGood ? hashOf(db, lastGood) : null;
      db.run("DELETE FROM audit_log WHERE seq > ?", [lastGood]);
      db.close();
      const r = await s.audit.verify();
      expect(r.ok).toBe(false);
      expect(r.missing).toBe(removed);
      // The next start says so at once.
      expect((await reopen(s, dir)).state).toMatchObject({
        kind: "continued",
        problem: `the log holds ${lastGood} entries, the latest checkpoint covers 250`,
      });
      expect(r.firstBroken?.seq).toBe(lastGood + 1);
      expect(r.lastGood).toEqual(lastGood ? { seq: lastGood, hash: lastGoodHash! } : null);
      expect(r.problem).toContain(removed === 1 ? "1 entry is missing" : `${removed} entries are missing`);
      expect(r.checkpoint?.seq).toBe(250);
    });
  }

  test("an entry rewritten and every later hash recomputed with plain SHA-256 is caught at that entry", async () => {
    const dir = tempDir();
    const s = keyedStorage(dir);
    await fill(s, 40);
    const db = sideDoor(dir);
    const good = hashOf(db, 16);
    rewriteAndRehash(db, 17, (prev, e, details) => entryHash(prev, e, details));
    db.close();
    const r = await s.audit.verify();
    expect(r).toMatchObject({ ok: false, entries: 16, firstBroken: { seq: 17 }, lastGood: { seq: 16, hash: good } });
    expect(r.firstBroken!.reason).toContain("plain SHA-256");
  });

  test("an entry rewritten and every later hash recomputed with a wrong key is caught at that entry", async () => {
    const dir = tempDir();
    const s = keyedStorage(dir);
    await fill(s, 40);
    const db = sideDoor(dir);
    const good = hashOf(db, 29);
    rewriteAndRehash(db, 30, (prev, e, details) => entryMac(WRONG.entry, prev, e, details));
    db.close();
    expect(await s.audit.verify()).toMatchObject({
      ok: false,
      firstBroken: { seq: 30, reason: "its content does not match its hash" },
      lastGood: { seq: 29, hash: good },
    });
  });

  test("the whole log rewritten with plain SHA-256 from its first entry is caught at entry 1", async () => {
    const dir = tempDir();
    const s = keyedStorage(dir);
    await fill(s, 10);
    const db = sideDoor(dir);
    rewriteAndRehash(db, 1, (prev, e, details) => entryHash(prev, e, details));
    db.close();
    expect(await s.audit.verify()).toMatchObject({ ok: false, firstBroken: { seq: 1 }, lastGood: null });
  });

  test("a missing checkpoint file is reported when the log is not empty, also after a restart", async () => {
    const dir = tempDir();
    let s = keyedStorage(dir);
    await fill(s, 5);
    rmSync(checkpointFile(dir));
    const r = await s.audit.verify();
    expect(r).toMatchObject({ ok: false, firstBroken: null, lastGood: { seq: 5 } });
    expect(r.problem).toContain("is missing");
    // A restart does not make it pass: the file it starts again does not begin at the chain's start.
    s = await reopen(s, dir);
    expect(s.state.kind).toBe("restarted");
    const again = await s.audit.verify();
    expect(again.ok).toBe(false);
    expect(again.problem).toContain("started again at entry 5");
  });

  test("an altered checkpoint line is reported", async () => {
    const dir = tempDir();
    let s = keyedStorage(dir);
    await fill(s, 5);
    s = await reopen(s, dir);
    const file = checkpointFile(dir);
    writeFileSync(file, readFileSync(file, "utf8").replace(/"seq":5/, '"seq":9'));
    const r = await s.audit.verify();
    expect(r.ok).toBe(false);
    expect(r.problem).toContain("checkpoint line 2 was altered");
  });

  test("a checkpoint line cut short by a crash is ignored, and cut before the next one", async () => {
    const dir = tempDir();
    let s = keyedStorage(dir);
    await fill(s, 5);
    s = await reopen(s, dir);
    const file = checkpointFile(dir);
    writeFileSync(file, readFileSync(file, "utf8") + '{"at":17,"head":"ab');
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 5 });
    await fill(s, 2, 5);
    s = await reopen(s, dir);
    expect(readCheckpoints(file, KEYS.checkpoint)).toMatchObject({ problem: null });
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 7, checkpoint: { seq: 7 } });
  });

  test("--expect-head: the log must hold that head (at that entry, when given)", async () => {
    const dir = tempDir();
    const s = keyedStorage(dir);
    await fill(s, 20);
    const db = sideDoor(dir);
    const h12 = hashOf(db, 12);
    expect(await s.audit.verify({ expectHead: { seq: 12, hash: h12 } })).toMatchObject({
      ok: true,
      expectHead: { found: true },
    });
    expect(await s.audit.verify({ expectHead: { seq: null, hash: h12 } })).toMatchObject({ ok: true });
    const other = "ab".repeat(32);
    const miss = await s.audit.verify({ expectHead: { seq: null, hash: other } });
    expect(miss).toMatchObject({ ok: false, expectHead: { found: false } });
    expect(miss.problem).toContain("is not in the log");
    // Entries after the last checkpoint cut off: only the operator's head can tell.
    db.run("DELETE FROM audit_log WHERE seq > 15");
    db.close();
    const cut = await s.audit.verify({ expectHead: { seq: 20, hash: "cd".repeat(32) } });
    expect(cut).toMatchObject({ ok: false, missing: 5, firstBroken: { seq: 16 }, lastGood: { seq: 15 } });
  });
});

describe("entries written before the chain was keyed", () => {
  test("verify as plain SHA-256, anchored once where they stood; a rewrite of them is caught", async () => {
    const dir = tempDir();
    const legacy = openStorage({ dir });
    await fill(legacy, 30);
    await legacy.close();
    let s = keyedStorage(dir);
    expect(s.state).toMatchObject({ kind: "upgraded", legacyThrough: 30 });
    await fill(s, 10, 30);
    const [newest] = await s.audit.list({ limit: 1 });
    expect(newest!.hash).toBe(entryMac(KEYS.entry, newest!.prevHash, newest!));
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 40 });
    s = await reopen(s, dir);
    expect(s.state.kind).toBe("continued");
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 40 });
    // A legacy entry rewritten and the plain chain recomputed up to the keyed part: the first
    // keyed entry's link no longer holds (and the upgrade checkpoint's head differs).
    // Plain links can be recomputed by anyone, so no legacy entry is vouched for on its own.
    const db = sideDoor(dir);
    rewriteAndRehash(db, 12, (prev, e, details) => (e.seq <= 30 ? entryHash(prev, e, details) : e.hash));
    db.close();
    const r = await s.audit.verify();
    expect(r).toMatchObject({ ok: false, entries: 0, lastGood: null, firstBroken: { seq: 30 } });
    expect(r.problem).toContain(
      "entries 1 to 30 (plain SHA-256, written before the chain was keyed) no longer end in the head the upgrade checkpoint",
    );
  });

  test("a keyed entry rewritten after the legacy ones is caught at that entry", async () => {
    const dir = tempDir();
    const legacy = openStorage({ dir });
    await fill(legacy, 30);
    await legacy.close();
    const s = keyedStorage(dir);
    await fill(s, 10, 30);
    const db = sideDoor(dir);
    const good = hashOf(db, 33);
    rewriteAndRehash(db, 34, (prev, e, details) => entryHash(prev, e, details));
    db.close();
    expect(await s.audit.verify()).toMatchObject({
      ok: false,
      entries: 33,
      firstBroken: { seq: 34 },
      lastGood: { seq: 33, hash: good },
    });
  });
});

describe("master-key rotation", () => {
  test("keeps the chain verifiable: its key does not follow the master key", async () => {
    const dir = tempDir();
    const keyFile = join(dir, "master.key");
    const start = () => {
      const s = openStorage({ dir });
      open.push(s);
      const { ring } = loadKeyring(keyFile);
      anchorAuditLog(s.audit, {
        dataDir: dir,
        masterKeyFile: keyFile,
        master: ring.sealing,
        credential: false,
        everyEntries: 1000,
        everyMs: 0,
        log: silentLogger,
      });
      return { s, vault: new Vault(s, ring, new Redactor(), systemClock, keyFile) };
    };
    let { s, vault } = start();
    await vault.set("beta/crm", "a-secret-value-long-enough", { actor: "test" });
    await fill(s, 5);
    const auditKey = readFileSync(join(dir, "audit.key"), "utf8");
    expect(statSync(join(dir, "audit.key")).mode & 0o777).toBe(0o600);
    await vault.rotateMaster({ actor: "test" });
    await fill(s, 5, 5);
    await vault.rotateMaster({ actor: "test" }); // the first master key is gone now
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 13 });
    await s.close();
    open.splice(open.indexOf(s), 1);
    ({ s, vault } = start());
    expect(readFileSync(join(dir, "audit.key"), "utf8")).toBe(auditKey);
    await fill(s, 2, 10);
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 15, problem: null });
    expect(existsSync(join(dir, "master.key.previous"))).toBe(true);
  });
});
