import { describe, expect, test } from "bun:test";
import { tempStorages } from "../../test/helpers/storage.ts";
import { checkpointFile } from "./anchor.ts";
import { canonicalEntry, canonicalJson, entryHash, entryMac, GENESIS } from "../store/audit-chain.ts";
import { chainKeysFrom } from "./keys.ts";

const storages = tempStorages();
const KEYS = chainKeysFrom(Buffer.alloc(32, 3));

/** A storage whose chain is keyed and anchored, as the appliance has it. */
function storage() {
  const s = storages();
  s.audit.anchor({ keys: KEYS, file: checkpointFile(s.dir), everyEntries: 1000, everyMs: 0 });
  return s;
}

async function fill(s: ReturnType<typeof storages>, n: number) {
  for (let i = 0; i < n; i++) {
    await s.audit.append({
      actor: `token:tok_${i % 3}`,
      tenant: i % 2 ? "beta" : null,
      action: ["token.create", "resource.update", "config.apply"][i % 3]!,
      target: `beta/endpoints/e${i}`,
      decision: i % 4 === 0 ? "allow" : null,
      details: { i, nested: { list: [i, "x"] } },
    });
  }
}

const COLUMNS = ["at", "actor", "tenant", "action", "target", "decision", "details", "prev_hash", "hash"] as const;

describe("the audit chain", () => {
  test("links every entry to the one before it, from a fixed genesis", async () => {
    const s = storage();
    await fill(s, 5);
    const rows = (await s.audit.list({ limit: 10 })).reverse();
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(rows[0]!.prevHash).toBe(GENESIS);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prevHash).toBe(rows[i - 1]!.hash);
    for (const r of rows) expect(r.hash).toBe(entryMac(KEYS.entry, r.prevHash, r));
    expect(await s.audit.verify()).toMatchObject({
      ok: true,
      entries: 5,
      head: rows.at(-1)!.hash,
      firstBroken: null,
      keyed: true,
      problem: null,
    });
  });

  test("without the vault's key (a tool), entries carry the plain SHA-256 link and verify as such", async () => {
    const s = storages();
    await fill(s, 3);
    const rows = (await s.audit.list({ limit: 10 })).reverse();
    for (const r of rows) expect(r.hash).toBe(entryHash(r.prevHash, r));
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 3, keyed: false, checkpoint: null });
  });

  test("the written-out canonical entry is exactly the generic canonical JSON of the entry", () => {
    const e = {
      seq: 7,
      at: 1795312662123,
      actor: 'token:"quoted"',
      tenant: null,
      action: "resource.update",
      target: "beta/routes/r\u00e9",
      decision: "allow",
      details: { z: [1, { b: 2, a: "\n" }], a: null },
    };
    expect(canonicalEntry(e)).toBe(canonicalJson(e));
  });

  test("the canonical form is byte for byte the one every stored hash was made with", () => {
    // The generic walk the chain's hashes were first computed with.
    const reference = (value: unknown): string => {
      if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
      if (Array.isArray(value)) return `[${value.map(reference).join(",")}]`;
      const keys = Object.keys(value as object)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${reference((value as Record<string, unknown>)[k])}`).join(",")}}`;
    };
    // biome-ignore lint/suspicious/noSparseArray: a hole must stay a hole
    const holes = [1, , 3];
    const values: unknown[] = [
      { delivery: "dlv_1", event: "evt_1", attempt: 1, url: "http://10.0.0.2/hook" },
      { b: [undefined, null, holes, [], {}], a: { d: undefined, c: '\u2028\n"', é: 1.5 }, "": true },
      [{ z: new Date(0), y: -0 }, "x", 2e21, Number.NaN],
      {},
      "plain",
      null,
      // Integer-like keys (enumerated numerically, sorted as text), case, escapes, astral and lone surrogates.
      { "10": 1, "9": 2, "1": 3, B: 4, a: 5, "\n": 6, '"': 7, "\u{1F600}": 8, "\uFFFF": 9, "\uD800": 10, é: 11 },
      // More keys than the insertion sort takes on.
      Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${(i * 7919) % 40}`, i])),
    ];
    for (const v of values) expect(canonicalJson(v)).toBe(reference(v));
    // Many distinct keys: the table of key texts stays bounded and right.
    for (let i = 0; i < 3000; i++) expect(canonicalJson({ [`key ${i}`]: i, a: 0 })).toBe(`{"a":0,"key ${i}":${i}}`);
    expect(canonicalJson({ b: 2, a: [1, { d: undefined, c: null }] })).toBe('{"a":[1,{"c":null}],"b":2}');
  });

  test("the canonical form does not depend on key order", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } })).toBe(
      canonicalJson({ a: { c: null, d: [1, { y: 2, z: 1 }] }, b: 1 }),
    );
  });

  test("the table is append-only: updates and deletes are refused", async () => {
    const s = storage();
    await fill(s, 2);
    expect(() => s.handle.sqlite.run("UPDATE audit_log SET actor = 'x' WHERE seq = 1")).toThrow("append-only");
    expect(() => s.handle.sqlite.run("DELETE FROM audit_log WHERE seq = 2")).toThrow("append-only");
  });

  test("any single-byte change of any row is detected, at that row", async () => {
    const s = storage();
    await fill(s, 12);
    const db = s.handle.sqlite;
    db.run("DROP TRIGGER audit_log_no_update"); // what someone editing the file would do first
    let seed = 7;
    const random = (n: number) => (((seed = (seed * 48271) % 2147483647) % n) + n) % n;
    let checked = 0;
    for (let seq = 1; seq <= 12; seq++) {
      for (const column of COLUMNS) {
        const original = db
          .query<Record<string, string | number | null>, [number]>(`SELECT ${column} AS v FROM audit_log WHERE seq = ?`)
          .get(seq)!.v;
        let changed: string | number;
        if (typeof original === "number") changed = original + 1;
        else {
          const text = original ?? "";
          const at = text.length ? random(text.length) : 0;
          const c = text.charCodeAt(at) || 96;
          changed = text.slice(0, at) + String.fromCharCode(c ^ 1) + text.slice(at + 1);
        }
        db.run(`UPDATE audit_log SET ${column} = ? WHERE seq = ?`, [changed, seq]);
        const report = await s.audit.verify();
        expect(report.ok, `${column} of entry ${seq}`).toBe(false);
        expect(report.firstBroken?.seq, `${column} of entry ${seq}`).toBe(seq);
        db.run(`UPDATE audit_log SET ${column} = ? WHERE seq = ?`, [original as string | number | null, seq]);
        checked++;
      }
    }
    expect(checked).toBe(12 * COLUMNS.length);
    expect((await s.audit.verify()).ok).toBe(true);
  });

  test("a removed entry is named as missing; a removed first entry too", async () => {
    const s = storage();
    await fill(s, 6);
    s.handle.sqlite.run("DROP TRIGGER audit_log_no_delete");
    s.handle.sqlite.run("DELETE FROM audit_log WHERE seq = 4");
    expect((await s.audit.verify()).firstBroken).toEqual({ seq: 5, reason: "entry 4 is missing (found 5 after 3)" });
    s.handle.sqlite.run("DELETE FROM audit_log WHERE seq = 1");
    expect((await s.audit.verify()).firstBroken?.seq).toBe(2);
  });

  test("an entry written in a unit of work that fails is rolled back with it, and the chain stays whole", async () => {
    const s = storage();
    await fill(s, 2);
    await s.committer
      .run((tx) => {
        s.audit.appendTx(tx, { actor: "system", action: "resource.update" });
        throw new Error("the change failed");
      })
      .catch(() => {});
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => s.audit.append({ actor: "system", action: "x", details: { i } })),
    );
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 52 });
  });

  test("units that fail among appends of the same commit lose only their entries: the others link to one another without a gap", async () => {
    const s = storage();
    await fill(s, 2);
    const units = Array.from({ length: 30 }, (_, i) =>
      s.committer.run((tx) => {
        s.audit.appendTx(tx, { actor: "system", action: "x", details: { i } });
        if (i % 7 === 3) throw new Error("the change failed");
      }),
    );
    const settled = await Promise.allSettled(units);
    expect(settled.filter((r) => r.status === "rejected")).toHaveLength(4);
    await s.audit.append({ actor: "system", action: "after" });
    expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 2 + 26 + 1 });
  });
});
