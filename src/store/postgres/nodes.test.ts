import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testPostgres } from "../../../test/helpers/postgres.ts";
import { openPostgresStorage, type PostgresStorage } from "./index.ts";

// Two nodes on one database: two storages, each with its own connections, as two processes have.
const pg = await testPostgres();
const skip = typeof pg === "string";
if (skip) console.log(`PostgreSQL nodes tests skipped: ${pg}`);

async function twoNodes(): Promise<{ a: PostgresStorage; b: PostgresStorage; cleanup(): Promise<void> }> {
  if (typeof pg === "string") throw new Error(pg);
  const url = await pg.freshDatabase();
  const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), "agentowl-node-")));
  const [a, b] = dirs.map((dir) => openPostgresStorage({ dir, url })) as [PostgresStorage, PostgresStorage];
  return {
    a,
    b,
    async cleanup() {
      await a.close().catch(() => {});
      await b.close().catch(() => {});
      await pg.drop(url);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test.skipIf(skip)(
  "two nodes appending to the audit log at once make one chain, without gaps, that verifies",
  async () => {
    const { a, b, cleanup } = await twoNodes();
    try {
      const append = (s: PostgresStorage, node: string, n: number) =>
        Promise.all(
          Array.from({ length: n }, (_, i) =>
            s.audit.append({ actor: "system", action: "test.write", details: { node, i } }),
          ),
        );
      const rounds = await Promise.all(
        [0, 1, 2, 3].map((r) => Promise.all([append(a, "a", 25 + r), append(b, "b", 25)])),
      );
      const seqs = rounds
        .flat(2)
        .map((e) => e.seq)
        .sort((x, y) => x - y);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
      for (const s of [a, b]) expect(await s.audit.verify()).toMatchObject({ ok: true, entries: seqs.length });
    } finally {
      await cleanup();
    }
  },
);

test.skipIf(skip)("a resource change on one node moves the other node's generation", async () => {
  const { a, b, cleanup } = await twoNodes();
  const listening = b.background(() => {});
  try {
    // LISTEN is set up asynchronously: change until the other node has heard one.
    const before = b.resources.generation;
    let version = 0;
    await until("the other node to hear of the change", () => {
      void a.resources
        .transact((tx) =>
          a.resources.putTx(
            tx,
            { tenant: "beta", kind: "endpoints", name: "crm" },
            { v: ++version },
            {
              mode: "upsert",
              actor: "t",
            },
          ),
        )
        .catch(() => {});
      return b.resources.generation > before;
    });
  } finally {
    await listening.stop();
    await cleanup();
  }
});

afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});
