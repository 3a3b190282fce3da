import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testPostgres } from "../../../test/helpers/postgres.ts";
import { chainKeysFrom } from "../../audit/keys.ts";
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

test.skipIf(skip)("blobs and spooled mail written by one node are read by the other, in 1 MiB chunks", async () => {
  const { a, b, cleanup } = await twoNodes();
  try {
    const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 7) % 251);
    const { sha256, size } = await a.blobs.put(big);
    expect(size).toBe(big.byteLength);
    expect(await b.blobs.get(sha256)).toEqual(big);
    const [n] = await b.db.read<{ n: unknown }>("SELECT count(*) AS n FROM blob_chunks WHERE sha256 = $1", [sha256]);
    expect(Number(n!.n)).toBe(4);
    // The same content put by both nodes at once is one blob.
    await Promise.all([a.blobs.put(big.subarray(5)), b.blobs.put(big.subarray(5))]);
    const raw = new TextEncoder().encode("Subject: hi\r\n\r\nbody\r\n");
    const refs = await Promise.all([a.spool.append(raw), a.spool.append(big), b.spool.append(raw)]);
    expect(refs[0]!.segment).toBe(refs[1]!.segment);
    expect(refs[1]!.offset).toBe(raw.byteLength);
    expect(refs[2]!.segment).not.toBe(refs[0]!.segment);
    expect(await b.spool.read(refs[0]!)).toEqual(raw);
    expect(await b.spool.read(refs[1]!)).toEqual(big);
    expect(await a.spool.read(refs[2]!)).toEqual(raw);
    expect(await b.spool.purge(Date.now() + 1)).toEqual({ segments: 2, bytes: 2 * raw.byteLength + big.byteLength });
    expect(await a.spool.read(refs[1]!)).toBeNull();
  } finally {
    await cleanup();
  }
});

test.skipIf(skip)(
  "the audit checkpoints are shared: a second node continues the first's anchoring, and both verify the chain",
  async () => {
    const { a, b, cleanup } = await twoNodes();
    try {
      const keys = chainKeysFrom(Buffer.alloc(32, 5));
      const anchor = (s: PostgresStorage) =>
        s.audit.anchor({ keys, file: "/nonexistent/checkpoints.jsonl", everyEntries: 5, everyMs: 0 });
      expect(anchor(a).kind).toBe("new");
      await Promise.all(
        Array.from({ length: 12 }, (_, i) => a.audit.append({ actor: "a", action: "t", details: { i } })),
      );
      expect(anchor(b)).toMatchObject({ kind: "continued", problem: null });
      await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          Promise.all([
            a.audit.append({ actor: "a", action: "t", details: { i } }),
            b.audit.append({ actor: "b", action: "t", details: { i } }),
          ]),
        ),
      );
      await Promise.all([a.audit.checkpoint(), b.audit.checkpoint()]);
      for (const s of [a, b])
        expect(await s.audit.verify()).toMatchObject({ ok: true, entries: 36, checkpoint: { seq: 36 }, problem: null });
      // A node whose head is older than a checkpoint already there writes none (the order never goes back).
      const [rows] = await a.db.read<{ n: unknown }>(
        "SELECT count(*) AS n FROM audit_checkpoints c WHERE EXISTS (SELECT 1 FROM audit_checkpoints d WHERE d.id < c.id AND d.seq > c.seq)",
      );
      expect(Number(rows!.n)).toBe(0);
    } finally {
      await cleanup();
    }
  },
);

test.skipIf(skip)(
  "an endpoint's places are counted across nodes: never more held than its limit; a dead node's come back at expiry",
  async () => {
    const { a, b, cleanup } = await twoNodes();
    try {
      const taken = [
        a.slots.take("t/crm", 3, "node-a", 60_000),
        b.slots.take("t/crm", 3, "node-b", 60_000),
        a.slots.take("t/crm", 3, "node-a", 60_000),
      ];
      expect(taken).toEqual([0, 1, 2]);
      expect(b.slots.take("t/crm", 3, "node-b", 60_000)).toBeNull();
      expect(a.slots.take("t/crm", 3, "node-a", 60_000)).toBeNull();
      // Another endpoint has places of its own; a lower limit counts only its first places.
      expect(b.slots.take("t/other", 1, "node-b", 60_000)).toBe(0);
      expect(b.slots.take("t/crm", 2, "node-b", 60_000)).toBeNull();
      b.slots.release("t/crm", 0, "node-b"); // node a's place: not b's to give back
      a.slots.release("t/crm", 0, "node-a");
      await until("the place to come free", () => b.slots.take("t/crm", 3, "node-b", 60_000) === 0);
      // A place held past its lease (its node died) is taken again.
      expect(a.slots.take("t/dead", 1, "node-a", 1)).toBe(0);
      await until("the dead node's lease to expire", () => b.slots.take("t/dead", 1, "node-b", 60_000) === 0);
    } finally {
      await cleanup();
    }
  },
);

afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});
