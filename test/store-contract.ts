/**
 * The storage conformance suite: every storage driver (SQLite now, PostgreSQL per docs/architecture.md later)
 * runs exactly these tests. They speak only the contract in src/store/contract.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ManualClock } from "../src/core/clock.ts";
import { isId, parseSeqId } from "../src/core/ids.ts";
import { chainKeysFrom } from "../src/audit/keys.ts";
import type { Storage, UnitOfWork } from "../src/store/contract.ts";

export interface ContractHarness {
  storage: Storage;
  clock: ManualClock;
  /** Close and open the same database again, as after a restart. */
  reopen(): Promise<Storage>;
  /** Where this storage's audit checkpoints go (a file beside its data, not in it). */
  checkpointFile: string;
  cleanup(): Promise<void>;
}

/** `random` is fixed at 0.5 so that jittered backoff is predictable. */
export type HarnessFactory = (opts: { clock: ManualClock; random: () => number }) => Promise<ContractHarness>;

const VIS = 30_000;

export function storageContract(driver: string, factory: HarnessFactory): void {
  describe(`storage contract: ${driver}`, () => {
    let h: ContractHarness | null = null;
    const open = async () => {
      h = await factory({ clock: new ManualClock(), random: () => 0.5 });
      return h;
    };
    afterEach(async () => {
      await h?.cleanup();
      h = null;
    });

    describe("committer", () => {
      test("concurrent units share commits and every caller is resolved after its commit", async () => {
        const { storage } = await open();
        const before = storage.committer.stats().commits;
        const ids = await Promise.all(
          Array.from({ length: 200 }, (_, i) => storage.queue.enqueue({ kind: "t", payload: { i } })),
        );
        const commits = storage.committer.stats().commits - before;
        expect(new Set(ids.map((r) => r.id)).size).toBe(200);
        expect(commits).toBeLessThan(5);
        const again = await h!.reopen();
        for (const { id } of ids) expect((await again.queue.get(id))?.state).toBe("available");
      });

      test("a failing unit loses only its own writes; the rest of its batch commits", async () => {
        const { storage } = await open();
        const good1 = storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: 1 }));
        const bad = storage.committer.run((tx: UnitOfWork) => {
          tx.enqueue({ kind: "t", payload: "doomed", idempotencyKey: "doomed" });
          throw new Error("refused");
        });
        const good2 = storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: 2 }));
        await expect(bad).rejects.toThrow("refused");
        const [a, b] = await Promise.all([good1, good2]);
        expect((await storage.queue.get(a.id))?.payload).toBe(1);
        expect((await storage.queue.get(b.id))?.payload).toBe(2);
        // The doomed job was rolled back: its key is free.
        expect((await storage.queue.enqueue({ kind: "t", payload: 3, idempotencyKey: "doomed" })).created).toBe(true);
      });

      test("after-commit hooks run only for units that committed", async () => {
        const { storage } = await open();
        const ran: string[] = [];
        await storage.committer.run((tx) => tx.afterCommit(() => ran.push("ok")));
        await storage.committer
          .run((tx) => {
            tx.afterCommit(() => ran.push("rolled back"));
            throw new Error("no");
          })
          .catch(() => {});
        expect(ran).toEqual(["ok"]);
      });

      test("an asynchronous unit is refused and writes nothing", async () => {
        const { storage } = await open();
        const p = storage.committer.run((tx) => {
          tx.enqueue({ kind: "t", payload: null, idempotencyKey: "async" });
          return Promise.resolve(1) as unknown as number;
        });
        await expect(p).rejects.toThrow("synchronous");
        expect((await storage.queue.enqueue({ kind: "t", payload: null, idempotencyKey: "async" })).created).toBe(true);
      });

      test("a closed committer commits what was pending and refuses new work", async () => {
        const { storage } = await open();
        const pending = storage.queue.enqueue({ kind: "t", payload: "last" });
        await storage.committer.close();
        expect((await pending).created).toBe(true);
        await expect(storage.queue.enqueue({ kind: "t", payload: "late" })).rejects.toThrow("shutting down");
      });
    });

    describe("queue", () => {
      test("enqueue, lease, ack: a job runs once and ends done", async () => {
        const { storage } = await open();
        const { id, created } = await storage.queue.enqueue({
          kind: "mail.parse",
          payload: { spool: "x" },
          tenant: "beta",
        });
        expect(created).toBe(true);
        expect(parseSeqId("job", id)).not.toBeNull();
        const [job] = await storage.queue.lease({ limit: 10, visibilityMs: VIS });
        expect(job).toMatchObject({
          id,
          kind: "mail.parse",
          tenant: "beta",
          payload: { spool: "x" },
          state: "leased",
          attempt: 1,
        });
        expect(await storage.queue.lease({ limit: 10, visibilityMs: VIS })).toEqual([]);
        expect(await storage.queue.ack(job!)).toBe(true);
        expect((await storage.queue.get(id))?.state).toBe("done");
        expect(await storage.queue.ack(job!)).toBe(false);
      });

      test("leases hand out the oldest ready jobs first, up to the limit, never future ones", async () => {
        const { storage, clock } = await open();
        const first = await storage.queue.enqueue({ kind: "t", payload: 1 });
        clock.advance(1);
        const second = await storage.queue.enqueue({ kind: "t", payload: 2 });
        await storage.queue.enqueue({ kind: "t", payload: "later", runAt: clock.now() + 60_000 });
        clock.advance(1);
        const third = await storage.queue.enqueue({ kind: "t", payload: 3 });
        const got = await storage.queue.lease({ limit: 2, visibilityMs: VIS });
        expect(got.map((j) => j.id)).toEqual([first.id, second.id]);
        expect((await storage.queue.lease({ limit: 10, visibilityMs: VIS })).map((j) => j.id)).toEqual([third.id]);
        clock.advance(60_000);
        expect((await storage.queue.lease({ limit: 10, visibilityMs: VIS })).map((j) => j.payload)).toEqual(["later"]);
      });

      test("a lease for some kinds leaves the other kinds alone", async () => {
        const { storage } = await open();
        await storage.queue.enqueue({ kind: "a", payload: null });
        await storage.queue.enqueue({ kind: "b", payload: null });
        const got = await storage.queue.lease({ kinds: ["b"], limit: 10, visibilityMs: VIS });
        expect(got.map((j) => j.kind)).toEqual(["b"]);
        expect((await storage.queue.depth()).available).toBe(1);
      });

      test("concurrent leases never hand out the same job twice", async () => {
        const { storage } = await open();
        await Promise.all(Array.from({ length: 300 }, (_, i) => storage.queue.enqueue({ kind: "t", payload: i })));
        const batches = await Promise.all(
          Array.from({ length: 40 }, () => storage.queue.lease({ limit: 10, visibilityMs: VIS })),
        );
        const ids = batches.flat().map((j) => j.id);
        expect(ids.length).toBe(300);
        expect(new Set(ids).size).toBe(300);
      });

      test("an idempotency key makes a job unique per kind, even under concurrent enqueues", async () => {
        const { storage } = await open();
        const results = await Promise.all(
          Array.from({ length: 20 }, () =>
            storage.queue.enqueue({ kind: "ingest", payload: null, idempotencyKey: "gh-delivery-1" }),
          ),
        );
        expect(new Set(results.map((r) => r.id)).size).toBe(1);
        expect(results.filter((r) => r.created).length).toBe(1);
        const other = await storage.queue.enqueue({ kind: "other", payload: null, idempotencyKey: "gh-delivery-1" });
        expect(other.created).toBe(true);
        expect(other.id).not.toBe(results[0]!.id);
      });

      test("a failed job comes back after an exponential, jittered delay", async () => {
        const { storage, clock } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null, maxAttempts: 5 });
        const delays: number[] = [];
        for (let attempt = 1; attempt <= 3; attempt++) {
          const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
          expect(job?.attempt).toBe(attempt);
          const outcome = await storage.queue.fail(job!, { message: `boom ${attempt}` });
          if (outcome.state !== "retry") throw new Error(`expected a retry, got ${outcome.state}`);
          delays.push(outcome.runAt - clock.now());
          expect(await storage.queue.lease({ limit: 1, visibilityMs: VIS })).toEqual([]);
          clock.advance(outcome.runAt - clock.now());
        }
        // random = 0.5: three quarters of 1 s, 2 s, 4 s.
        expect(delays).toEqual([750, 1500, 3000]);
        expect((await storage.queue.get(id))?.lastError).toBe("boom 3");
      });

      test("Retry-After from the failing side is honoured", async () => {
        const { storage, clock } = await open();
        await storage.queue.enqueue({ kind: "t", payload: null });
        const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        const outcome = await storage.queue.fail(job!, { message: "429", retryAfterMs: 120_000 });
        expect(outcome).toEqual({ state: "retry", runAt: clock.now() + 120_000 });
      });

      test("a wait (exactDelay) is retried after exactly its delay, however many attempts came before", async () => {
        const { storage, clock } = await open();
        await storage.queue.enqueue({ kind: "t", payload: null, maxAttempts: 100 });
        for (let i = 0; i < 6; i++) {
          const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
          expect(await storage.queue.fail(job!, { message: "busy", retryAfterMs: 250, exactDelay: true })).toEqual({
            state: "retry",
            runAt: clock.now() + 250,
          });
          clock.advance(250);
        }
      });

      test("a job is dead-lettered after its last attempt", async () => {
        const { storage, clock } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null, maxAttempts: 2 });
        let [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect((await storage.queue.fail(job!, { message: "1" })).state).toBe("retry");
        clock.advance(10_000);
        [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect(await storage.queue.fail(job!, { message: "2" })).toEqual({ state: "dead", reason: "max_attempts" });
        expect(await storage.queue.get(id)).toMatchObject({
          state: "dead",
          deadReason: "max_attempts",
          lastError: "2",
        });
        clock.advance(10_000_000);
        expect(await storage.queue.lease({ limit: 1, visibilityMs: VIS })).toEqual([]);
        expect((await storage.queue.depth()).dead).toBe(1);
      });

      test("a permanent failure is dead-lettered at once", async () => {
        const { storage } = await open();
        await storage.queue.enqueue({ kind: "t", payload: null });
        const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect(await storage.queue.fail(job!, { message: "410 Gone", retryable: false })).toEqual({
          state: "dead",
          reason: "permanent",
        });
      });

      test("a job past its max age is dead-lettered instead of retried or run", async () => {
        const { storage, clock } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null, maxAgeMs: 1_000 });
        const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect(await storage.queue.fail(job!, { message: "x", retryAfterMs: 5_000 })).toEqual({
          state: "dead",
          reason: "max_age",
        });
        expect((await storage.queue.get(id))?.deadReason).toBe("max_age");

        const waiting = await storage.queue.enqueue({ kind: "t", payload: null, maxAgeMs: 1_000 });
        clock.advance(1_000);
        expect(await storage.queue.lease({ limit: 1, visibilityMs: VIS })).toEqual([]);
        expect((await storage.queue.sweep(7 * 86_400_000)).expired).toBe(1);
        expect((await storage.queue.get(waiting.id))?.state).toBe("dead");
      });

      test("the job of a worker that died comes back when its lease expires, and the dead worker's ack is refused", async () => {
        const { storage, clock } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null });
        const [stale] = await storage.queue.lease({ limit: 1, visibilityMs: 1_000 });
        clock.advance(999);
        expect(await storage.queue.recoverExpired()).toBe(0);
        clock.advance(1);
        expect(await storage.queue.recoverExpired()).toBe(1);
        const [fresh] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect(fresh).toMatchObject({ id, attempt: 2 });
        expect(await storage.queue.ack(stale!)).toBe(false);
        expect(await storage.queue.fail(stale!, { message: "late" })).toEqual({ state: "lost" });
        expect(await storage.queue.ack(fresh!)).toBe(true);
      });

      test("recoverExpired({all}) returns every leased job at once (start-up under the data dir's lock)", async () => {
        const { storage } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null });
        await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
        expect(await storage.queue.recoverExpired()).toBe(0);
        expect(await storage.queue.recoverExpired({ all: true })).toBe(1);
        expect(await storage.queue.get(id)).toMatchObject({ state: "available" });
      });

      test("runs cut off by the process stopping (recoverExpired at start-up) do not use up max_attempts, up to 100 runs", async () => {
        const { storage } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null, maxAttempts: 2 });
        // Ten start-ups in a row find it leased: it is never dead-lettered for that.
        for (let i = 0; i < 10; i++) {
          expect(await storage.queue.lease({ limit: 1, visibilityMs: 60_000 })).toHaveLength(1);
          expect(await storage.queue.recoverExpired({ all: true })).toBe(1);
          expect(await storage.queue.get(id)).toMatchObject({ state: "available" });
        }
        // Its own failures still count: two of them and it is dead.
        const [first] = await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
        expect(await storage.queue.fail(first!, { message: "no", retryAfterMs: 0, exactDelay: true })).toMatchObject({
          state: "retry",
        });
        const [second] = await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
        expect(await storage.queue.fail(second!, { message: "no" })).toEqual({ state: "dead", reason: "max_attempts" });
      });

      test("a job whose runs keep being cut off is dead-lettered after 100 runs in all", async () => {
        const { storage } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null, maxAttempts: 3 });
        let runs = 0;
        while ((await storage.queue.get(id))?.state === "available" && runs < 200) {
          expect(await storage.queue.lease({ limit: 1, visibilityMs: 60_000 })).toHaveLength(1);
          runs++;
          await storage.queue.recoverExpired({ all: true });
        }
        expect(runs).toBe(100);
        expect(await storage.queue.get(id)).toMatchObject({ state: "dead", deadReason: "max_attempts" });
      });

      test("a lease that expires on the last attempt dead-letters the job", async () => {
        const { storage, clock } = await open();
        const { id } = await storage.queue.enqueue({ kind: "t", payload: null, maxAttempts: 1 });
        await storage.queue.lease({ limit: 1, visibilityMs: 1_000 });
        clock.advance(1_000);
        expect(await storage.queue.recoverExpired()).toBe(1);
        expect(await storage.queue.get(id)).toMatchObject({ state: "dead", deadReason: "max_attempts" });
      });

      test("extending a lease keeps a long job from being recovered", async () => {
        const { storage, clock } = await open();
        await storage.queue.enqueue({ kind: "t", payload: null });
        const [job] = await storage.queue.lease({ limit: 1, visibilityMs: 1_000 });
        clock.advance(900);
        expect(await storage.queue.extend(job!, 1_000)).toBe(true);
        clock.advance(900);
        expect(await storage.queue.recoverExpired()).toBe(0);
        expect(await storage.queue.ack(job!)).toBe(true);
      });

      test("depth counts jobs by state, telling ready from scheduled", async () => {
        const { storage, clock } = await open();
        await storage.queue.enqueue({ kind: "t", payload: 1 });
        await storage.queue.enqueue({ kind: "t", payload: 2 });
        await storage.queue.enqueue({ kind: "t", payload: 3, runAt: clock.now() + 5_000 });
        const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect(await storage.queue.depth()).toEqual({ available: 1, scheduled: 1, leased: 1, done: 0, dead: 0 });
        await storage.queue.ack(job!);
        expect((await storage.queue.depth()).done).toBe(1);
      });

      test("backlog counts the jobs waiting to run, scheduled ones too; activeDepth all but the done ones", async () => {
        const { storage, clock } = await open();
        expect(await storage.queue.backlog()).toBe(0);
        for (const payload of [1, 2, 3]) await storage.queue.enqueue({ kind: "t", payload });
        await storage.queue.enqueue({ kind: "t", payload: 4, runAt: clock.now() + 5_000 });
        const [done, leased] = await storage.queue.lease({ limit: 2, visibilityMs: VIS });
        await storage.queue.ack(done!);
        expect(leased).toBeDefined();
        const [dead] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        await storage.queue.fail(dead!, { message: "no", retryable: false });
        expect(await storage.queue.depth()).toMatchObject({ available: 0, scheduled: 1, leased: 1, done: 1, dead: 1 });
        expect(await storage.queue.backlog()).toBe(1);
        expect(await storage.queue.activeDepth()).toEqual({ available: 0, scheduled: 1, leased: 1, dead: 1 });
        await storage.queue.enqueue({ kind: "t", payload: 5 });
        expect(await storage.queue.backlog()).toBe(2);
      });

      test("unfinished finds the waiting or running job keyed by a prefix, the newest first, and never a neighbour's", async () => {
        const { storage, clock } = await open();
        expect(await storage.queue.unfinished("d", "delivery:a")).toBeNull();
        const first = await storage.queue.enqueue({ kind: "d", payload: 1, idempotencyKey: "delivery:a" });
        await storage.queue.enqueue({ kind: "d", payload: 2, idempotencyKey: "delivery:ab" });
        await storage.queue.enqueue({ kind: "other", payload: 3, idempotencyKey: "delivery:a:x" });
        expect((await storage.queue.unfinished("d", "delivery:a"))?.id).toBe(first.id);
        await storage.queue.ack(
          (await storage.queue.lease({ kinds: ["d"], limit: 2, visibilityMs: VIS })).find((j) => j.id === first.id)!,
        );
        expect(await storage.queue.unfinished("d", "delivery:a")).toBeNull();
        const retry = await storage.queue.enqueue({
          kind: "d",
          payload: 4,
          idempotencyKey: "delivery:a:retry:1",
          runAt: clock.now() + 60_000,
        });
        expect(await storage.queue.unfinished("d", "delivery:a")).toMatchObject({
          id: retry.id,
          state: "available",
          runAt: clock.now() + 60_000,
        });
      });

      test("runNow makes the scheduled jobs of the given keys due now, and leaves the others", async () => {
        const { storage, clock } = await open();
        const later = clock.now() + 60_000;
        const a = await storage.queue.enqueue({
          kind: "d",
          payload: 1,
          idempotencyKey: "delivery:a:retry:1",
          runAt: later,
        });
        const b = await storage.queue.enqueue({ kind: "d", payload: 2, idempotencyKey: "delivery:b", runAt: later });
        const c = await storage.queue.enqueue({ kind: "d", payload: 3, idempotencyKey: "delivery:c", runAt: later });
        let woken = 0;
        storage.queue.onEnqueued(() => woken++);
        expect(await storage.queue.runNow("d", ["delivery:a", "delivery:b", "delivery:zz"])).toBe(2);
        expect(woken).toBeGreaterThan(0);
        expect((await storage.queue.get(a.id))?.runAt).toBe(clock.now());
        expect((await storage.queue.get(b.id))?.runAt).toBe(clock.now());
        expect((await storage.queue.get(c.id))?.runAt).toBe(later);
        expect((await storage.queue.lease({ limit: 5, visibilityMs: VIS })).map((j) => j.id).sort()).toEqual(
          [a.id, b.id].sort(),
        );
        expect(await storage.queue.runNow("d", [])).toBe(0);
      });

      test("the retention sweep purges finished jobs older than the retention, and nothing else", async () => {
        const { storage, clock } = await open();
        const old = await storage.queue.enqueue({ kind: "t", payload: null });
        const waiting = await storage.queue.enqueue({ kind: "t", payload: null, runAt: clock.now() + 10 * 86_400_000 });
        await storage.queue.ack((await storage.queue.lease({ limit: 1, visibilityMs: VIS }))[0]!);
        clock.advance(8 * 86_400_000);
        const recent = await storage.queue.enqueue({ kind: "t", payload: null });
        await storage.queue.ack((await storage.queue.lease({ limit: 1, visibilityMs: VIS }))[0]!);
        expect((await storage.queue.sweep(7 * 86_400_000)).purged).toBe(1);
        expect(await storage.queue.get(old.id)).toBeNull();
        expect((await storage.queue.get(recent.id))?.state).toBe("done");
        expect((await storage.queue.get(waiting.id))?.state).toBe("available");
      });

      test("listeners hear about enqueues only after they committed", async () => {
        const { storage } = await open();
        let heard = 0;
        const off = storage.queue.onEnqueued(() => heard++);
        await storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: 1 }));
        await storage.committer.run(() => 0);
        await storage.committer
          .run((tx) => {
            tx.enqueue({ kind: "t", payload: 2 });
            throw new Error("rolled back");
          })
          .catch(() => {});
        off();
        await storage.queue.enqueue({ kind: "t", payload: 3 });
        expect(heard).toBe(1);
      });

      test("a job acked in the same unit as the state change it caused commits with it", async () => {
        const { storage } = await open();
        await storage.queue.enqueue({ kind: "t", payload: null });
        const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        await storage.committer
          .run((tx) => {
            expect(tx.ack(job!)).toBe(true);
            tx.enqueue({ kind: "next", payload: null });
            throw new Error("the follow-up failed");
          })
          .catch(() => {});
        expect((await storage.queue.get(job!.id))?.state).toBe("leased");
        expect((await storage.queue.depth()).available).toBe(0);
        await storage.committer.run((tx) => {
          tx.ack(job!);
          tx.enqueue({ kind: "next", payload: null });
        });
        expect((await storage.queue.get(job!.id))?.state).toBe("done");
        expect((await storage.queue.depth()).available).toBe(1);
      });
    });

    describe("outbox", () => {
      test("a state change and the events it emits commit together or not at all", async () => {
        const { storage } = await open();
        await storage.committer
          .run((tx) => {
            tx.enqueue({ kind: "t", payload: "state" });
            tx.emit({ topic: "task.delivered", tenant: "beta", payload: { n: 1 } });
            throw new Error("abort");
          })
          .catch(() => {});
        expect(await storage.outbox.read(0, 10)).toEqual([]);
        const id = await storage.committer.run((tx) => {
          tx.enqueue({ kind: "t", payload: "state" });
          return tx.emit({ topic: "task.delivered", tenant: "beta", payload: { n: 2 } });
        });
        expect(isId(id, "obx")).toBe(true);
        const entries = await storage.outbox.read(0, 10);
        expect(entries).toHaveLength(1);
        expect(entries[0]).toMatchObject({ id, topic: "task.delivered", tenant: "beta", payload: { n: 2 } });
        expect((await storage.queue.depth()).available).toBe(1);
      });

      test("entries are read in commit order after a position", async () => {
        const { storage } = await open();
        for (let i = 0; i < 5; i++) await storage.outbox.emit({ topic: "t", payload: i });
        const all = await storage.outbox.read(0, 100);
        expect(all.map((e) => e.payload)).toEqual([0, 1, 2, 3, 4]);
        expect((await storage.outbox.read(all[2]!.seq, 100)).map((e) => e.payload)).toEqual([3, 4]);
        expect((await storage.outbox.read(0, 2)).map((e) => e.payload)).toEqual([0, 1]);
      });

      test("a read by topics returns only those topics, and how far it has read", async () => {
        const { storage } = await open();
        const topics = ["a", "b", "a", "c", "c", "c"];
        for (const [i, topic] of topics.entries()) await storage.outbox.emit({ topic, payload: i });
        const head = (await storage.outbox.read(0, 100)).at(-1)!.seq;
        // Fewer than the limit: the subscriber has passed the whole log, the entries it skipped too.
        const some = await storage.outbox.readTopics(0, 100, ["a", "b"]);
        expect(some.entries.map((e) => e.payload)).toEqual([0, 1, 2]);
        expect(some.upTo).toBe(head);
        // The limit reached: only as far as the last entry returned.
        const two = await storage.outbox.readTopics(0, 2, ["a", "b"]);
        expect(two.entries.map((e) => e.payload)).toEqual([0, 1]);
        expect(two.upTo).toBe(two.entries[1]!.seq);
        expect(await storage.outbox.readTopics(head, 10, ["a"])).toEqual({ entries: [], upTo: head });
        expect((await storage.outbox.readTopics(0, 10, ["none"])).entries).toEqual([]);
      });

      test("committed entries are counted by topic; rolled-back ones are not", async () => {
        const { storage } = await open();
        const counted: string[] = [];
        storage.outbox.onCommitted((topic) => counted.push(topic));
        await storage.outbox.emit({ topic: "a", payload: 1 });
        await expect(
          storage.committer.run((tx) => {
            tx.emit({ topic: "b", payload: 2 });
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        await storage.committer.run((tx) => {
          tx.emit({ topic: "c", payload: 3 });
          tx.emit({ topic: "c", payload: 4 });
        });
        expect(counted).toEqual(["a", "c", "c"]);
      });

      test("a retired subscriber's cursor can be dropped, and then holds back nothing", async () => {
        const { storage, clock } = await open();
        for (let i = 0; i < 2; i++) await storage.outbox.emit({ topic: "t", payload: i });
        const [e0, e1] = await storage.outbox.read(0, 2);
        await storage.outbox.advance("live", e1!.seq);
        await storage.outbox.advance("retired", e0!.seq);
        clock.advance(1_001);
        await storage.outbox.forget("retired");
        expect(await storage.outbox.cursor("retired")).toBe(0);
        expect(await storage.outbox.purge(1_000)).toBe(2);
      });

      test("a subscriber's cursor is durable and never moves backwards", async () => {
        const { storage } = await open();
        expect(await storage.outbox.cursor("console")).toBe(0);
        await storage.outbox.advance("console", 7);
        await storage.outbox.advance("console", 3);
        const again = await h!.reopen();
        expect(await again.outbox.cursor("console")).toBe(7);
      });

      test("purge removes only entries every subscriber has passed and that are older than the retention", async () => {
        const { storage, clock } = await open();
        for (let i = 0; i < 4; i++) await storage.outbox.emit({ topic: "t", payload: i });
        const [e0, e1] = await storage.outbox.read(0, 2);
        await storage.outbox.advance("fast", e1!.seq);
        await storage.outbox.advance("slow", e0!.seq);
        expect(await storage.outbox.purge(1_000)).toBe(0);
        clock.advance(1_001);
        expect(await storage.outbox.purge(1_000)).toBe(1);
        expect((await storage.outbox.read(0, 10)).map((e) => e.payload)).toEqual([1, 2, 3]);
      });
    });

    test("a durable write probe succeeds", async () => {
      const { storage } = await open();
      await storage.probeWrite();
    });

    describe("audit log", () => {
      const keys = chainKeysFrom(Buffer.alloc(32, 5));
      const anchor = (storage: Storage, file: string, seen: number[] = []) =>
        storage.audit.anchor({ keys, file, everyEntries: 4, everyMs: 0, onCheckpoint: (cp) => seen.push(cp.seq) });
      const append = (storage: Storage, n: number) =>
        Promise.all(
          Array.from({ length: n }, (_, i) =>
            storage.audit.append({ actor: "system", action: "test.write", details: { i } }),
          ),
        );

      test("checkpoints cover only committed entries, every N of them and at close, and verify after a restart", async () => {
        const h = await open();
        const seen: number[] = [];
        expect(anchor(h.storage, h.checkpointFile, seen).kind).toBe("new");
        for (let i = 0; i < 5; i++) await append(h.storage, 3);
        expect(seen[0]).toBe(0);
        expect(seen.slice(1).every((seq, i) => seq > seen[i]! && seq <= 15)).toBe(true);
        const reopened = await h.reopen();
        expect(seen.at(-1)).toBe(15);
        expect(anchor(reopened, h.checkpointFile).kind).toBe("continued");
        expect(await reopened.audit.verify()).toMatchObject({
          ok: true,
          entries: 15,
          keyed: true,
          checkpoint: { seq: 15 },
          problem: null,
        });
      });

      test("a head the operator kept must be in the log", async () => {
        const { storage, checkpointFile } = await open();
        anchor(storage, checkpointFile);
        const entries = await append(storage, 3);
        const head = entries.sort((a, b) => a.seq - b.seq).at(-1)!;
        expect(await storage.audit.verify({ expectHead: { seq: head.seq, hash: head.hash } })).toMatchObject({
          ok: true,
          expectHead: { found: true },
        });
        expect(await storage.audit.verify({ expectHead: { seq: 9, hash: head.hash } })).toMatchObject({ ok: false });
      });
    });
  });
}
