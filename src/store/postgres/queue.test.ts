import { afterAll, expect, test } from "bun:test";
import { freshPgStorage } from "../../../test/helpers/pg-storage.ts";
import { testPostgres } from "../../../test/helpers/postgres.ts";
import { openPostgresStorage, type PostgresStorage } from "./index.ts";
import { claimStatement, PLAN_IN_ORDER } from "./queue.ts";

const pg = await testPostgres();
const skip = typeof pg === "string";
if (skip) console.log(`PostgreSQL queue tests skipped: ${pg}`);

const open = () => freshPgStorage(pg, "pgqueue");

test.skipIf(skip)(
  "a claim walks the ready jobs in order and stops at its limit, even when the statistics predate the backlog",
  async () => {
    const { s, cleanup } = await open();
    try {
      // A burst into a table not analyzed since it was made (autovacuum comes within a minute):
      // without statistics the planner's estimate is about one ready job.
      await s.queue.enqueue({ kind: "k", payload: null });
      for (let chunk = 0; chunk < 5; chunk++) {
        await Promise.all(
          Array.from({ length: 1000 }, (_, i) => s.queue.enqueue({ kind: "k", payload: { chunk, i } })),
        );
      }
      const plan = await s.committer
        .run((tx) => {
          tx.conn.defer(PLAN_IN_ORDER);
          const rows = tx.conn.query<Record<string, string>>(`EXPLAIN (ANALYZE, COSTS OFF) ${claimStatement(true)}`, [
            tx.now,
            tx.now + 60_000,
            null,
            500,
            ["k"],
          ]);
          // EXPLAIN ANALYZE ran the claim: give it back.
          throw new Error(rows.map((r) => Object.values(r)[0]).join("\n"));
        })
        .catch((e: Error) => e.message);
      expect(plan).not.toContain("Bitmap");
      expect(plan).not.toContain("Sort");
      expect(plan).toMatch(/Index Scan using jobs_ready on jobs \w+ \(actual time=[\d.]+ rows=500 loops=1\)/);
      // And the claim itself, oldest first.
      const leased = await s.queue.lease({ kinds: ["k"], limit: 500, visibilityMs: 60_000 });
      expect(leased.map((j) => j.payload)).toEqual([null, ...Array.from({ length: 499 }, (_, i) => ({ chunk: 0, i }))]);
    } finally {
      await cleanup();
    }
  },
);

test.skipIf(skip)(
  "the claim's planner settings stay with the claim: the batch's other units plan as configured",
  async () => {
    const { s, cleanup } = await open();
    try {
      await s.queue.enqueue({ kind: "k", payload: null });
      // One event-loop turn: the claim and the other unit share one transaction.
      const [leased, settings] = await Promise.all([
        s.queue.lease({ limit: 10, visibilityMs: 60_000 }),
        s.committer.run(
          (tx) =>
            tx.conn.query(
              "SELECT current_setting('enable_bitmapscan') AS bitmap, current_setting('enable_sort') AS sort",
            )[0],
        ),
      ]);
      expect(leased).toHaveLength(1);
      expect(settings).toEqual({ bitmap: "on", sort: "on" });
    } finally {
      await cleanup();
    }
  },
);

afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});
