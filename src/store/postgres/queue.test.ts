import { afterAll, expect, test } from "bun:test";
import { freshPgStorage } from "../../../test/helpers/pg-storage.ts";
import { testPostgres } from "../../../test/helpers/postgres.ts";
import { openPostgresStorage, type PostgresStorage } from "./index.ts";
import { claimStatement } from "./queue.ts";

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
      // The plan on the claims' connection, in a transaction rolled back (EXPLAIN ANALYZE runs the claim).
      const conn = await s.db.claims.reserve();
      let plan: string;
      try {
        await conn.unsafe("BEGIN");
        const now = Date.now();
        const rows = await conn.unsafe(`EXPLAIN (ANALYZE, COSTS OFF) ${claimStatement(true)}`, [
          now,
          now + 60_000,
          null,
          500,
          ["k"],
        ]);
        plan = Array.from(rows as Record<string, string>[], (r) => Object.values(r)[0]).join("\n");
      } finally {
        await conn.unsafe("ROLLBACK");
        conn.release();
      }
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
  "the claim's planner settings stay on the claims' connection: units and the pool plan as configured",
  async () => {
    const { s, cleanup } = await open();
    try {
      await s.queue.enqueue({ kind: "k", payload: null });
      const SHOW = "SELECT current_setting('enable_bitmapscan') AS bitmap, current_setting('enable_sort') AS sort";
      const [leased, inUnit] = await Promise.all([
        s.queue.lease({ limit: 10, visibilityMs: 60_000 }),
        s.committer.run((tx) => tx.conn.query(SHOW)[0]),
      ]);
      expect(leased).toHaveLength(1);
      expect(inUnit).toEqual({ bitmap: "on", sort: "on" });
      expect(await s.db.read(SHOW)).toEqual([{ bitmap: "on", sort: "on" }]);
      expect(Array.from(await s.db.claims.unsafe(SHOW))).toEqual([{ bitmap: "off", sort: "off" }]);
      // A claim is one autocommit statement: nothing is left open on its connection.
      expect(Array.from(await s.db.claims.unsafe("SELECT now() = statement_timestamp() AS fresh"))).toEqual([
        { fresh: true },
      ]);
    } finally {
      await cleanup();
    }
  },
);

afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});
