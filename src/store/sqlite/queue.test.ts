import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStorage } from "./index.ts";

/** SQLite-only: a job created leased to its creator (the dispatcher's fast path). */
const dir = mkdtempSync(join(tmpdir(), "agentowl-queue-leased-"));
const storage = openSqliteStorage({ dir });
afterAll(async () => {
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("enqueueLeasedTx", () => {
  test("the job is leased to its creator at once: nobody else can claim it, and its creator acks it", async () => {
    const job = await storage.committer.run((tx) =>
      storage.queue.enqueueLeasedTx(
        tx,
        { kind: "t.leased", payload: { n: 1 }, idempotencyKey: "k1" },
        { owner: "me", visibilityMs: 60_000 },
      ),
    );
    expect(job).toMatchObject({ kind: "t.leased", state: "leased", attempt: 1, payload: { n: 1 } });
    expect(await storage.queue.lease({ kinds: ["t.leased"], limit: 10, visibilityMs: 1000, owner: "other" })).toEqual(
      [],
    );
    expect(await storage.queue.ack(job!)).toBe(true);
    expect((await storage.queue.get(job!.id))?.state).toBe("done");
  });

  test("its idempotency key is honoured: a second one is null", async () => {
    const again = await storage.committer.run((tx) =>
      storage.queue.enqueueLeasedTx(
        tx,
        { kind: "t.leased", payload: null, idempotencyKey: "k1" },
        { owner: "me", visibilityMs: 60_000 },
      ),
    );
    expect(again).toBeNull();
  });

  test("failed by its creator, it is retried like any job; when its creator dies, it is recovered", async () => {
    const job = await storage.committer.run((tx) =>
      storage.queue.enqueueLeasedTx(
        tx,
        { kind: "t.retry", payload: null, maxAttempts: 5 },
        { owner: "me", visibilityMs: 60_000 },
      ),
    );
    const failed = await storage.queue.fail(job!, { message: "HTTP 503", retryAfterMs: 1000 });
    expect(failed).toMatchObject({ state: "retry" });
    expect(await storage.queue.get(job!.id)).toMatchObject({ state: "available", attempt: 1, lastError: "HTTP 503" });

    const orphan = await storage.committer.run((tx) =>
      storage.queue.enqueueLeasedTx(tx, { kind: "t.orphan", payload: null }, { owner: "dead", visibilityMs: 60_000 }),
    );
    expect(await storage.queue.recoverExpired({ all: true })).toBeGreaterThanOrEqual(1);
    const [recovered] = await storage.queue.lease({
      kinds: ["t.orphan"],
      limit: 1,
      visibilityMs: 1000,
      owner: "runner",
    });
    expect(recovered).toMatchObject({ id: orphan!.id, attempt: 2 });
  });
});
