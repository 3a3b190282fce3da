import { afterAll, expect, test } from "bun:test";
import { freshPgStorage } from "../../../test/helpers/pg-storage.ts";
import { testPostgres } from "../../../test/helpers/postgres.ts";
import { openPostgresStorage, type PostgresStorage } from "./index.ts";
import { OUTBOX_LOCK } from "./outbox.ts";

const pg = await testPostgres();
const skip = typeof pg === "string";
if (skip) console.log(`PostgreSQL committer tests skipped: ${pg}`);

const open = () => freshPgStorage(pg, "committer");

test.skipIf(skip)(
  "the append lock is not held while a batch's units run: audit and outbox entries are written at its end",
  async () => {
    const { s, cleanup } = await open();
    try {
      const held = s.committer.run((tx) => {
        s.audit.appendTx(tx, { actor: "system", action: "test.first" });
        tx.emit({ topic: "test.topic", payload: { n: 1 } });
        const [r] = tx.conn.query<{ n: unknown }>(
          "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objid = $1",
          [OUTBOX_LOCK],
        );
        return Number(r!.n);
      });
      expect(await held).toBe(0);
      const entries = await s.audit.list({ limit: 10 });
      expect(entries.map((e) => [e.seq, e.action])).toEqual([[1, "test.first"]]);
      expect((await s.outbox.read(0, 10)).map((e) => e.payload)).toEqual([{ n: 1 }]);
    } finally {
      await cleanup();
    }
  },
);

test.skipIf(skip)(
  "a unit rolled back inside a batch leaves no gap in the chain and none of its outbox entries; the rest keep their order",
  async () => {
    const { s, cleanup } = await open();
    try {
      // One event-loop turn: one batch; every third unit fails after appending, so the batch reruns isolated.
      const units = Array.from({ length: 12 }, (_, i) =>
        s.committer.run((tx) => {
          const entry = s.audit.appendTx(tx, { actor: "system", action: "test.unit", details: { i } });
          tx.emit({ topic: "test.topic", payload: { i } });
          if (i % 3 === 2) throw new Error(`unit ${i} refuses`);
          return entry;
        }),
      );
      const settled = await Promise.allSettled(units);
      expect(settled.filter((r) => r.status === "rejected")).toHaveLength(4);
      const kept = settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      // What appendTx returned carries its seq and links once the unit's caller is answered.
      expect(kept.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(kept.map((e) => e.details.i)).toEqual([0, 1, 3, 4, 6, 7, 9, 10]);
      for (let i = 1; i < kept.length; i++) expect(kept[i]!.prevHash).toBe(kept[i - 1]!.hash);
      const listed = await s.audit.list({ limit: 20 });
      expect(listed.reverse()).toEqual(kept);
      expect((await s.outbox.read(0, 20)).map((e) => (e.payload as { i: number }).i)).toEqual([
        0, 1, 3, 4, 6, 7, 9, 10,
      ]);
      expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 8 });
      // The next batch links to the last entry committed.
      const next = await s.audit.append({ actor: "system", action: "test.next" });
      expect(next).toMatchObject({ seq: 9, prevHash: kept.at(-1)!.hash });
    } finally {
      await cleanup();
    }
  },
);

test.skipIf(skip)(
  "an entry PostgreSQL refuses fails only its own unit: the batch's other units commit, the chain verifies",
  async () => {
    const { s, cleanup } = await open();
    try {
      const units = [0, 1, 2].map((i) =>
        s.committer.run((tx) => {
          s.audit.appendTx(tx, { actor: "system", action: "test.unit", details: { i } });
          // A lone surrogate: JSON.stringify escapes it, and jsonb refuses the escape.
          tx.emit({ topic: "test.topic", payload: i === 1 ? { s: "\ud800" } : { i } });
          return i;
        }),
      );
      const settled = await Promise.allSettled(units);
      expect(settled.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
      expect((await s.outbox.read(0, 10)).map((e) => e.payload)).toEqual([{ i: 0 }, { i: 2 }]);
      const listed = await s.audit.list({ limit: 10 });
      expect(listed.map((e) => [e.seq, e.details.i])).toEqual([
        [2, 2],
        [1, 0],
      ]);
      expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 2 });
    } finally {
      await cleanup();
    }
  },
);

afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});
