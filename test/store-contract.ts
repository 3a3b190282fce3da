/**
 * The storage conformance suite: every storage driver (SQLite now, PostgreSQL per docs/architecture.md later)
 * runs exactly these tests. They speak only the contract in src/store/contract.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ManualClock } from "../src/core/clock.ts";
import { isId, parseSeqId } from "../src/core/ids.ts";
import { chainKeysFrom } from "../src/audit/keys.ts";
import { newId } from "../src/core/ids.ts";
import { ENVELOPE_VERSION, type Envelope, type Span } from "../src/events/envelope.ts";
import {
  APPROVAL_DECIDED,
  type DeliveryRow,
  type NewDelivery,
  type NewUser,
  type SecretRow,
  type Storage,
  type UnitOfWork,
} from "../src/store/contract.ts";

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

      test("before-commit hooks run once the batch's units have run and before its COMMIT, never for a unit that failed", async () => {
        const { storage } = await open();
        const seen: string[] = [];
        const ok = storage.committer.run((tx) => {
          tx.beforeCommit(() => {
            seen.push("ok");
          });
          return tx.enqueue({ kind: "t", payload: "ok" });
        });
        const bad = storage.committer.run((tx) => {
          tx.beforeCommit(() => seen.push("failed unit"));
          throw new Error("no");
        });
        const later = storage.committer.run((tx) => {
          // Its unit ran after the first one's hook was registered, and before any hook ran.
          seen.push("later unit");
          tx.beforeCommit(() => {
            throw new Error("a hook's failure is its own");
          });
          return tx.enqueue({ kind: "t", payload: "later" });
        });
        await expect(bad).rejects.toThrow("no");
        const [a, b] = await Promise.all([ok, later]);
        // The optimistic try stopped at the failing unit (before the third); the rerun that
        // committed ran every unit, then the hooks of those that succeeded.
        expect(seen).toEqual(["later unit", "ok"]);
        expect((await storage.queue.get(a.id))?.payload).toBe("ok");
        expect((await storage.queue.get(b.id))?.payload).toBe("later");
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

      test("a unit that may wait commits with what arrives meanwhile, when its wait is up", async () => {
        const { storage } = await open();
        const before = storage.committer.stats().commits;
        const t0 = performance.now();
        const first = storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: 1 }), { waitMs: 60 });
        await Bun.sleep(20);
        // Arrives later with the same wait: it goes with the first, whose time is up sooner.
        const second = storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: 2 }), { waitMs: 60 });
        const [a, b] = await Promise.all([first, second]);
        const waited = performance.now() - t0;
        expect(waited).toBeGreaterThanOrEqual(50);
        expect(waited).toBeLessThan(2000);
        expect(storage.committer.stats().commits - before).toBe(1);
        expect((await storage.queue.get(a.id))?.payload).toBe(1);
        expect((await storage.queue.get(b.id))?.payload).toBe(2);
      });

      test("a unit that cannot wait takes the waiting ones along at once; closing commits them too", async () => {
        const { storage } = await open();
        const before = storage.committer.stats().commits;
        const t0 = performance.now();
        const waiting = storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: "waits" }), { waitMs: 10_000 });
        const urgent = await storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: "urgent" }));
        const waited = await waiting;
        expect(performance.now() - t0).toBeLessThan(2000);
        expect(storage.committer.stats().commits - before).toBe(1);
        expect((await storage.queue.get(waited.id))?.payload).toBe("waits");
        expect((await storage.queue.get(urgent.id))?.payload).toBe("urgent");
        const last = storage.committer.run((tx) => tx.enqueue({ kind: "t", payload: "last" }), { waitMs: 10_000 });
        await storage.committer.close();
        expect((await last).created).toBe(true);
        expect(performance.now() - t0).toBeLessThan(2000);
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

      test("a job id is never handed out twice, even after the sweep purged every finished job", async () => {
        const { storage, clock } = await open();
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) {
          ids.push((await storage.queue.enqueue({ kind: "t", payload: i })).id);
          await storage.queue.ack((await storage.queue.lease({ limit: 1, visibilityMs: VIS }))[0]!);
        }
        clock.advance(8 * 86_400_000);
        await storage.queue.sweep(7 * 86_400_000);
        expect(await storage.queue.get(ids[0]!)).toBeNull();
        const next = await storage.queue.enqueue({ kind: "t", payload: 3 });
        expect(ids).not.toContain(next.id);
        // Ids sort in enqueue order (src/core/ids.ts seqId): the new one comes after them all.
        expect([...ids, next.id].sort()).toEqual([...ids, next.id]);
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
        const tenants: (string | null)[] = [];
        storage.outbox.onCommitted((topic, tenant) => {
          counted.push(topic);
          tenants.push(tenant);
        });
        await storage.outbox.emit({ topic: "a", payload: 1 });
        await expect(
          storage.committer.run((tx) => {
            tx.emit({ topic: "b", payload: 2 });
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        await storage.committer.run((tx) => {
          tx.emit({ topic: "c", tenant: "t1", payload: 3 });
          tx.emit({ topic: "c", payload: 4 });
        });
        expect(counted).toEqual(["a", "c", "c"]);
        expect(tenants).toEqual([null, "t1", null]);
      });

      test("an announcement is written only while a subscriber follows its topic, and counted either way", async () => {
        const { storage } = await open();
        const counted: string[] = [];
        storage.outbox.onCommitted((topic) => counted.push(topic));
        const announce = (topic: string) =>
          storage.committer.run((tx) => tx.emit({ topic, tenant: "t1", payload: { topic }, ifFollowed: true }));
        expect(await announce("delivery.delivered")).toBe("");
        const stop = storage.outbox.follow(["delivery.*"]);
        storage.outbox.follow(["approval.decided"]);
        expect(await announce("delivery.dead")).not.toBe("");
        expect(await announce("approval.decided")).not.toBe("");
        expect(await announce("endpoint.url_changed")).toBe("");
        stop();
        expect(await announce("delivery.delivered")).toBe("");
        // A plain entry is written whether or not anyone follows it.
        await storage.outbox.emit({ topic: "endpoint.url_changed", payload: 1 });
        expect((await storage.outbox.read(0, 100)).map((e) => e.topic)).toEqual([
          "delivery.dead",
          "approval.decided",
          "endpoint.url_changed",
        ]);
        expect(counted).toEqual([
          "delivery.delivered",
          "delivery.dead",
          "approval.decided",
          "endpoint.url_changed",
          "delivery.delivered",
          "endpoint.url_changed",
        ]);
        // A subscriber to every topic follows them all.
        storage.outbox.follow(null);
        expect(await announce("anything.at_all")).not.toBe("");
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

    describe("singleton leases", () => {
      test("a lease is held by one holder at a time and renewed by it; another takes it once it expired or was released", async () => {
        const { storage, clock } = await open();
        const { leases } = storage;
        expect(await leases.acquire("relay", "node-a", 10_000)).toBe(true);
        expect(await leases.acquire("relay", "node-b", 10_000)).toBe(false);
        // Another name is another lease.
        expect(await leases.acquire("retention", "node-b", 10_000)).toBe(true);
        clock.advance(6_000);
        expect(await leases.acquire("relay", "node-a", 10_000)).toBe(true);
        clock.advance(6_000);
        // Renewed at 6 s, so it still runs to 16 s.
        expect(await leases.acquire("relay", "node-b", 10_000)).toBe(false);
        clock.advance(4_000);
        expect(await leases.acquire("relay", "node-b", 10_000)).toBe(true);
        expect(await leases.acquire("relay", "node-a", 10_000)).toBe(false);
        // A release by someone else changes nothing; the holder's lets the next one in at once.
        await leases.release("relay", "node-a");
        expect(await leases.acquire("relay", "node-a", 10_000)).toBe(false);
        await leases.release("relay", "node-b");
        expect(await leases.acquire("relay", "node-a", 10_000)).toBe(true);
      });

      test("concurrent acquires of a free lease give it to exactly one holder", async () => {
        const { storage } = await open();
        const got = await Promise.all(
          Array.from({ length: 8 }, (_, i) => storage.leases.acquire("relay", `node-${i}`, 10_000)),
        );
        expect(got.filter(Boolean).length).toBe(1);
      });
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

    describe("leased fast path", () => {
      test("a job born leased runs on its creator's lease: nobody else claims it, its creator acks it", async () => {
        const { storage, clock } = await open();
        const job = await storage.committer.run((tx) =>
          storage.queue.enqueueLeasedTx(
            tx,
            { kind: "fast", payload: { n: 1 }, tenant: "beta" },
            {
              owner: "me",
              visibilityMs: VIS,
            },
          ),
        );
        expect(job).toMatchObject({
          kind: "fast",
          tenant: "beta",
          payload: { n: 1 },
          state: "leased",
          attempt: 1,
          runAt: clock.now(),
          leaseExpiresAt: clock.now() + VIS,
        });
        expect((await storage.queue.get(job!.id))?.state).toBe("leased");
        expect(await storage.queue.lease({ limit: 10, visibilityMs: VIS })).toEqual([]);
        expect(await storage.queue.ack(job!)).toBe(true);
        expect((await storage.queue.get(job!.id))?.state).toBe("done");
      });

      test("its idempotency key is honoured (null when taken), and it rolls back with its unit", async () => {
        const { storage } = await open();
        const spec = { kind: "fast", payload: 1, idempotencyKey: "k" };
        const lease = { owner: null, visibilityMs: VIS };
        expect(await storage.committer.run((tx) => storage.queue.enqueueLeasedTx(tx, spec, lease))).not.toBeNull();
        expect(await storage.committer.run((tx) => storage.queue.enqueueLeasedTx(tx, spec, lease))).toBeNull();
        await storage.committer
          .run((tx) => {
            storage.queue.enqueueLeasedTx(tx, { ...spec, idempotencyKey: "doomed" }, lease);
            throw new Error("no");
          })
          .catch(() => {});
        expect(
          await storage.committer.run((tx) =>
            storage.queue.enqueueLeasedTx(tx, { ...spec, idempotencyKey: "doomed" }, lease),
          ),
        ).not.toBeNull();
      });

      test("when its creator dies, the job is recovered like any other", async () => {
        const { storage, clock } = await open();
        const job = await storage.committer.run((tx) =>
          storage.queue.enqueueLeasedTx(tx, { kind: "fast", payload: 1 }, { owner: "dead", visibilityMs: VIS }),
        );
        clock.advance(VIS + 1);
        expect(await storage.queue.recoverExpired()).toBe(1);
        const [again] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect(again).toMatchObject({ id: job!.id, attempt: 2 });
        expect(await storage.queue.ack(job!)).toBe(false);
      });

      test("enqueueTx and ackTx are the unit of work's enqueue and ack", async () => {
        const { storage } = await open();
        const { id } = await storage.committer.run((tx) => storage.queue.enqueueTx(tx, { kind: "t", payload: 1 }));
        const [job] = await storage.queue.lease({ limit: 1, visibilityMs: VIS });
        expect(job?.id).toBe(id);
        expect(await storage.committer.run((tx) => storage.queue.ackTx(tx, job!))).toBe(true);
        expect((await storage.queue.get(id))?.state).toBe("done");
      });
    });

    describe("events, deliveries and attempts", () => {
      const envelope = (clock: ManualClock, over: Partial<Envelope> = {}): Envelope => {
        const id = newId("evt", clock.now());
        return {
          id,
          version: ENVELOPE_VERSION,
          type: "webhook.received",
          tenant: "beta",
          agent: null,
          channel: "webhook",
          source: { binding: "hooks" },
          received_at: new Date(clock.now()).toISOString(),
          trace_id: `T-${id.slice(4)}`,
          idempotency_key: null,
          data: { json: { n: 1 } },
          ...over,
        };
      };
      const span = (name: string): Span => ({ name, start: "2026-01-01T00:00:00.000Z", duration_ms: 1, outcome: "ok" });
      const delivery = (clock: ManualClock, e: Envelope, endpoint: string, over: Partial<NewDelivery> = {}) => {
        clock.advance(1);
        return {
          id: newId("dlv", clock.now()),
          eventId: e.id,
          tenant: e.tenant,
          endpoint,
          state: "pending",
          createdAt: clock.now(),
          updatedAt: clock.now(),
          ...over,
        } satisfies NewDelivery;
      };
      const insert = (
        storage: Storage,
        e: Envelope,
        trace: Span[] = [],
        routing: Record<string, unknown> | null = null,
      ) => storage.committer.run((tx) => storage.events.insertTx(tx, e, trace, routing));

      test("an event is stored once per tenant, binding and idempotency key, and read back whole", async () => {
        const { storage, clock } = await open();
        const first = envelope(clock, { idempotency_key: "k1" });
        expect(await insert(storage, first, [span("ingress")])).toEqual({ id: first.id, created: true });
        clock.advance(1);
        const repeat = envelope(clock, { idempotency_key: "k1" });
        expect(await insert(storage, repeat)).toEqual({ id: first.id, created: false });
        // The same key on another binding is another event.
        const other = envelope(clock, { idempotency_key: "k1", source: { binding: "other" } });
        expect((await insert(storage, other)).created).toBe(true);
        expect(await storage.events.get(first.id)).toEqual({
          envelope: first,
          trace: [span("ingress")],
          tenant: "beta",
        });
        expect(await storage.events.get(repeat.id)).toBeNull();
      });

      test("events are listed newest first before a cursor, or oldest first after one, filtered", async () => {
        const { storage, clock } = await open();
        const made: Envelope[] = [];
        for (const [tenant, type] of [
          ["beta", "webhook.received"],
          ["alpha", "webhook.received"],
          ["beta", "email.received"],
          ["beta", "webhook.received"],
        ] as const) {
          clock.advance(1000);
          const e = envelope(clock, { tenant, type, channel: type === "email.received" ? "email" : "webhook" });
          made.push(e);
          await insert(storage, e);
        }
        const ids = (rows: { envelope: Envelope }[]) => rows.map((r) => r.envelope.id);
        expect(ids(await storage.events.list({ limit: 10 }))).toEqual(made.map((e) => e.id).reverse());
        expect(ids(await storage.events.list({ limit: 2 }))).toEqual([made[3]!.id, made[2]!.id]);
        expect(ids(await storage.events.list({ before: made[2]!.id, limit: 10 }))).toEqual([made[1]!.id, made[0]!.id]);
        expect(ids(await storage.events.list({ after: made[1]!.id, limit: 10 }))).toEqual([made[2]!.id, made[3]!.id]);
        expect(ids(await storage.events.list({ tenants: ["alpha"], limit: 10 }))).toEqual([made[1]!.id]);
        expect(ids(await storage.events.list({ type: "email.received", limit: 10 }))).toEqual([made[2]!.id]);
        expect(ids(await storage.events.list({ channel: "email", limit: 10 }))).toEqual([made[2]!.id]);
        const at = (e: Envelope) => Date.parse(e.received_at);
        expect(ids(await storage.events.list({ since: at(made[1]!), until: at(made[2]!), limit: 10 }))).toEqual([
          made[2]!.id,
          made[1]!.id,
        ]);
      });

      test("events are filtered by their deliveries' state and by a search on subject or sender", async () => {
        const { storage, clock } = await open();
        const mail = (subject: string, from: unknown, tenant = "beta") => {
          clock.advance(1000);
          return envelope(clock, {
            tenant,
            type: "email.received",
            channel: "email",
            data: { subject, from, text: "body mentions Invoice too" },
          });
        };
        const delivered = mail("Invoice 42", { name: "Ann Smith", address: "ann@example.test" });
        const dead = mail("Re: 100%_done", { name: null, address: "bob@example.test" });
        const failing = mail("hello", { address: "carl@example.test" });
        const waiting = mail("approve me", { name: "Dora", address: "dora@example.test" });
        const none = mail("nothing routed", { address: "eve@example.test" });
        clock.advance(1000);
        const sms = envelope(clock, { type: "sms.received", channel: "sms", data: { from: "+15550001", text: "hi" } });
        const mixed = mail("mixed", { address: "fay@example.test" });
        for (const e of [delivered, dead, failing, waiting, none, sms, mixed]) await insert(storage, e);
        const states: [Envelope, DeliveryRow["state"], string][] = [
          [delivered, "delivered", "crm"],
          [delivered, "denied", "erp"],
          [dead, "dead", "crm"],
          [failing, "retrying", "crm"],
          [waiting, "awaiting_approval", "crm"],
          [sms, "delivered", "crm"],
          [mixed, "delivered", "crm"],
          [mixed, "pending", "erp"],
        ];
        for (const [e, state, endpoint] of states)
          await storage.committer.run((tx) =>
            storage.events.insertDeliveryTx(tx, delivery(clock, e, endpoint, { state })),
          );
        const ids = (rows: { envelope: Envelope }[]) => rows.map((r) => r.envelope.id);
        const page = (q: Partial<Parameters<Storage["events"]["page"]>[0]>) =>
          storage.events.page({ limit: 10, scan: 100, ...q }).then((p) => ids(p.events));
        expect(await page({ state: "delivered" })).toEqual([sms.id, delivered.id]);
        expect(await page({ state: "dead" })).toEqual([dead.id]);
        expect(await page({ state: "failing" })).toEqual([failing.id]);
        expect(await page({ state: "awaiting_approval" })).toEqual([waiting.id]);
        expect(await page({ state: "none" })).toEqual([none.id]);
        // list takes the same filters.
        expect(ids(await storage.events.list({ state: "dead", limit: 10 }))).toEqual([dead.id]);
        // Subject or sender (address, name, an SMS's number); any case; % and _ are plain characters.
        expect(await page({ search: "invoice" })).toEqual([delivered.id]);
        expect(await page({ search: "ANN SMITH" })).toEqual([delivered.id]);
        expect(await page({ search: "bob@example" })).toEqual([dead.id]);
        expect(await page({ search: "100%_" })).toEqual([dead.id]);
        expect(await page({ search: "0%d" })).toEqual([]);
        expect(await page({ search: "5550001" })).toEqual([sms.id]);
        // The body is not searched.
        expect(await page({ search: "mentions" })).toEqual([]);
        expect(await page({ search: "example.test", state: "delivered", tenants: ["beta"] })).toEqual([delivered.id]);
        expect(await page({ search: "example.test", tenants: ["alpha"] })).toEqual([]);
      });

      test("an event page is keyset-paginated and examines at most its scan of events", async () => {
        const { storage, clock } = await open();
        const made: Envelope[] = [];
        for (let i = 0; i < 12; i++) {
          clock.advance(1000);
          const e = envelope(clock, {
            tenant: i % 2 ? "alpha" : "beta",
            type: "email.received",
            channel: "email",
            data: { subject: i % 4 === 0 ? `match ${i}` : `other ${i}`, from: { address: `u${i}@x.test` } },
          });
          made.push(e);
          await insert(storage, e);
        }
        const ids = (rows: { envelope: Envelope }[]) => rows.map((r) => r.envelope.id);
        const newest = [...made].reverse().map((e) => e.id);
        // No filter beyond the index: plain pages of `limit`, the last one without a cursor.
        const p1 = await storage.events.page({ limit: 5, scan: 3 });
        expect(ids(p1.events)).toEqual(newest.slice(0, 5));
        expect(p1).toMatchObject({ next: newest[4], partial: false });
        const p3 = await storage.events.page({ limit: 5, scan: 3, before: newest[9] });
        expect(p3).toMatchObject({ next: null, partial: false });
        expect(ids(p3.events)).toEqual(newest.slice(10));
        // Search: matches are made[8], made[4], made[0]. Enough scan: every match, then the end.
        const all = await storage.events.page({ search: "match", limit: 2, scan: 100 });
        expect(ids(all.events)).toEqual([made[8]!.id, made[4]!.id]);
        expect(all).toMatchObject({ next: made[4]!.id, partial: false });
        const rest = await storage.events.page({ search: "match", limit: 2, scan: 100, before: all.next! });
        expect(ids(rest.events)).toEqual([made[0]!.id]);
        expect(rest).toMatchObject({ next: null, partial: false });
        // A scan of 5 examines made[11..7]: one match, then a cursor at the oldest examined event.
        const partial = await storage.events.page({ search: "match", limit: 2, scan: 5 });
        expect(ids(partial.events)).toEqual([made[8]!.id]);
        expect(partial).toMatchObject({ next: made[7]!.id, partial: true });
        const more = await storage.events.page({ search: "match", limit: 2, scan: 5, before: partial.next! });
        expect(ids(more.events)).toEqual([made[4]!.id]);
        expect(more).toMatchObject({ next: made[2]!.id, partial: true });
        const last = await storage.events.page({ search: "match", limit: 2, scan: 5, before: more.next! });
        expect(ids(last.events)).toEqual([made[0]!.id]);
        expect(last).toMatchObject({ next: null, partial: false });
        // The window walks the tenant's own events: beta holds made[0, 2, 4, ...].
        const beta = await storage.events.page({ tenants: ["beta"], search: "match", limit: 5, scan: 3 });
        expect(ids(beta.events)).toEqual([made[8]!.id]);
        expect(beta).toMatchObject({ next: made[6]!.id, partial: true });
      });

      test("a commit tells its listeners of each event it inserted, not of a repeat or a rollback", async () => {
        const { storage, clock } = await open();
        const heard: [string, string][] = [];
        const stop = storage.events.onInserted((tenant, id) => heard.push([tenant, id]));
        const a = envelope(clock, { idempotency_key: "k" });
        await insert(storage, a);
        clock.advance(1);
        await insert(storage, envelope(clock, { idempotency_key: "k" }));
        clock.advance(1);
        await expect(
          storage.committer.run((tx) => {
            storage.events.insertTx(tx, envelope(clock, { tenant: "alpha" }));
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        expect(heard).toEqual([["beta", a.id]]);
        stop();
        clock.advance(1);
        await insert(storage, envelope(clock));
        expect(heard.length).toBe(1);
      });

      test("an event waits for routing until its routing is recorded, with routing's spans", async () => {
        const { storage, clock } = await open();
        const e = envelope(clock);
        await insert(storage, e, [span("ingress")]);
        expect(await storage.events.getRouting(e.id)).toBeNull();
        expect(await storage.events.getUnroutedEvent(e.id)).toEqual({ envelope: e, tenant: "beta" });
        expect(await storage.events.getUnroutedEvent(e.id)).toEqual({ envelope: e, tenant: "beta" });
        expect(await storage.committer.run((tx) => storage.events.unroutedEventTx(tx, e.id))).toEqual({
          envelope: e,
          tenant: "beta",
        });
        await storage.committer.run((tx) =>
          storage.events.setRoutingTx(tx, e.id, { matched: ["r1"] }, [span("route")]),
        );
        expect(await storage.events.getRouting(e.id)).toEqual({ matched: ["r1"] });
        expect(await storage.events.getUnroutedEvent(e.id)).toBeNull();
        expect(await storage.committer.run((tx) => storage.events.unroutedEventTx(tx, e.id))).toBeNull();
        expect((await storage.events.get(e.id))?.trace).toEqual([span("ingress"), span("route")]);
        // Routed at its commit: never handed to the router.
        const routed = envelope(clock);
        await insert(storage, routed, [], { matched: [] });
        expect(await storage.events.getRouting(routed.id)).toEqual({ matched: [] });
        expect(await storage.events.getUnroutedEvent(routed.id)).toBeNull();
      });

      test("an event has one first delivery per endpoint; replays are further ones, and the newest is found", async () => {
        const { storage, clock } = await open();
        const e = envelope(clock);
        await insert(storage, e);
        const first = delivery(clock, e, "crm", { route: "r1", trace: [span("policy.eval")] });
        expect(await storage.committer.run((tx) => storage.events.insertDeliveryTx(tx, first))).toBe(true);
        expect(
          await storage.committer.run((tx) => storage.events.insertDeliveryTx(tx, delivery(clock, e, "crm"))),
        ).toBe(false);
        const replay = delivery(clock, e, "crm", { replayOf: first.id, requestedBy: "token:tok_a" });
        const other = delivery(clock, e, "erp");
        await storage.committer.run((tx) => {
          storage.events.insertDeliveryTx(tx, replay);
          storage.events.insertDeliveryTx(tx, other);
        });
        expect(await storage.events.getDelivery(first.id)).toEqual({
          ...first,
          attempts: 0,
          lastStatus: null,
          lastError: null,
          route: "r1",
          decision: null,
          approvalId: null,
          firstAttemptAt: null,
          replayOf: null,
          requestedBy: null,
          attemptBase: 0,
          trace: [span("policy.eval")],
        } satisfies DeliveryRow);
        expect(await storage.events.getDelivery("dlv_missing")).toBeNull();
        expect((await storage.committer.run((tx) => storage.events.deliveryTx(tx, replay.id)))?.replayOf).toBe(
          first.id,
        );
        expect((await storage.events.getLatestDelivery(e.id, "crm"))?.id).toBe(replay.id);
        expect((await storage.committer.run((tx) => storage.events.latestDeliveryTx(tx, e.id, "crm")))?.id).toBe(
          replay.id,
        );
        expect(await storage.events.getLatestDelivery(e.id, "nowhere")).toBeNull();
        expect((await storage.events.listFirstDeliveries(e.id)).map((d) => d.id).sort()).toEqual(
          [first.id, other.id].sort(),
        );
        expect((await storage.events.deliveries({ eventId: e.id, limit: 10 })).map((d) => d.id)).toEqual([
          other.id,
          replay.id,
          first.id,
        ]);
        expect((await storage.events.deliveries({ endpoint: "erp", limit: 10 })).map((d) => d.id)).toEqual([other.id]);
        expect((await storage.events.deliveries({ before: replay.id, limit: 10 })).map((d) => d.id)).toEqual([
          first.id,
        ]);
        expect(await storage.events.deliveries({ tenants: ["alpha"], limit: 10 })).toEqual([]);
        expect(await storage.events.countDeliveries("beta", "crm")).toEqual({ pending: 2 });
      });

      test("a trace reads back exactly as its spans were given: details, outcomes, a start in another form", async () => {
        const { storage, clock } = await open();
        const given: Span[] = [
          { name: "ingress.verify", start: "2026-12-06T17:59:41.882Z", duration_ms: 0.001, outcome: "ok" },
          { name: "route", start: "2026-12-06T17:59:41.883Z", duration_ms: 0.25, outcome: "ok", detail: "crm, erp" },
          { name: "policy.eval", start: "2026-12-06T17:59:41.883Z", duration_ms: 0, outcome: "skipped", detail: "" },
          { name: "odd", start: "2026-12-06T17:59:41Z", duration_ms: 3, outcome: "error", detail: "kept as given" },
        ];
        const e = envelope(clock);
        await insert(storage, e, given);
        expect((await storage.events.get(e.id))?.trace).toEqual(given);
        const d = delivery(clock, e, "crm", { trace: given.slice(0, 2) });
        await storage.committer.run((tx) => storage.events.insertDeliveryTx(tx, d));
        await storage.committer.run((tx) => storage.events.appendSpansTx(tx, d.id, given.slice(2)));
        expect((await storage.events.getDelivery(d.id))?.trace).toEqual(given);
      });

      test("checkpoints, updates and spans change a delivery; a discarded one stays discarded", async () => {
        const { storage, clock } = await open();
        const e = envelope(clock);
        await insert(storage, e);
        const d = delivery(clock, e, "crm");
        await storage.committer.run((tx) => storage.events.insertDeliveryTx(tx, d));
        const row = (await storage.events.getDelivery(d.id))!;
        clock.advance(5);
        await storage.committer.run((tx) =>
          storage.events.checkpointTx(tx, { ...row, state: "delivering", attempts: 1, firstAttemptAt: clock.now() }, [
            span("state.store"),
          ]),
        );
        expect(await storage.events.getDelivery(d.id)).toMatchObject({
          state: "delivering",
          attempts: 1,
          firstAttemptAt: clock.now(),
          updatedAt: clock.now(),
          trace: [span("state.store")],
        });
        await storage.committer.run((tx) => storage.events.appendSpansTx(tx, d.id, [span("delivery")]));
        clock.advance(5);
        await storage.committer.run((tx) =>
          storage.events.updateDeliveryTx(tx, d.id, { state: "dead", lastStatus: 500, lastError: "boom" }, [
            span("audit.log"),
          ]),
        );
        expect(await storage.events.getDelivery(d.id)).toMatchObject({
          state: "dead",
          lastStatus: 500,
          lastError: "boom",
          attempts: 1,
          updatedAt: clock.now(),
          trace: [span("state.store"), span("delivery"), span("audit.log")],
        });
        expect(await storage.events.countDeliveries("beta", "crm")).toEqual({ dead: 1 });
        const discarded = await storage.committer.run((tx) =>
          storage.events.transitionTx(tx, d.id, ["dead", "retrying"], { state: "discarded", requestedBy: "token:t" }),
        );
        expect(discarded).toMatchObject({ id: d.id, state: "discarded", requestedBy: "token:t" });
        expect(
          await storage.committer.run((tx) => storage.events.transitionTx(tx, d.id, ["dead"], { state: "delivering" })),
        ).toBeNull();
        await storage.committer.run((tx) =>
          storage.events.checkpointTx(tx, { ...(discarded as DeliveryRow), state: "retrying" }),
        );
        expect((await storage.events.getDelivery(d.id))?.state).toBe("discarded");
      });

      test("the deliveries parked on an approval are found by it", async () => {
        const { storage, clock } = await open();
        const e = envelope(clock);
        await insert(storage, e);
        const [a, b, c] = [delivery(clock, e, "a"), delivery(clock, e, "b"), delivery(clock, e, "c")];
        await storage.committer.run((tx) => {
          for (const [d, approvalId] of [
            [a, "apr_1"],
            [b, "apr_1"],
            [c, "apr_2"],
          ] as const) {
            storage.events.insertDeliveryTx(tx, d);
            storage.events.updateDeliveryTx(tx, d.id, { state: "awaiting_approval", approvalId });
          }
        });
        expect((await storage.events.listDeliveriesOfApproval("apr_1")).map((d) => d.id).sort()).toEqual(
          [a.id, b.id].sort(),
        );
        expect(await storage.events.listDeliveriesOfApproval("apr_3")).toEqual([]);
      });

      test("attempts are recorded and read back in order", async () => {
        const { storage, clock } = await open();
        const e = envelope(clock);
        await insert(storage, e);
        const d = delivery(clock, e, "crm");
        await storage.committer.run((tx) => {
          storage.events.insertDeliveryTx(tx, d);
          storage.events.insertAttemptTx(tx, {
            deliveryId: d.id,
            attempt: 2,
            startedAt: 20,
            latencyMs: 7,
            status: 200,
          });
          storage.events.insertAttemptTx(tx, {
            deliveryId: d.id,
            attempt: 1,
            startedAt: 10,
            latencyMs: 30_000,
            errorClass: "timeout",
            error: "no answer",
            excerpt: null,
          });
        });
        const attempts = await storage.events.listAttempts(d.id);
        expect(attempts).toMatchObject([
          { deliveryId: d.id, attempt: 1, startedAt: 10, latencyMs: 30_000, status: null, errorClass: "timeout" },
          { deliveryId: d.id, attempt: 2, status: 200, errorClass: null, error: null, excerpt: null },
        ]);
        expect(await storage.events.listAttempts("dlv_none")).toEqual([]);
      });

      test("an event and its deliveries roll back with their unit", async () => {
        const { storage, clock } = await open();
        const e = envelope(clock);
        const d = delivery(clock, e, "crm");
        await expect(
          storage.committer.run((tx) => {
            storage.events.insertTx(tx, e);
            storage.events.insertDeliveryTx(tx, d);
            throw new Error("refused");
          }),
        ).rejects.toThrow("refused");
        expect(await storage.events.get(e.id)).toBeNull();
        expect(await storage.events.getDelivery(d.id)).toBeNull();
        expect((await insert(storage, e)).created).toBe(true);
      });

      describe("rates", () => {
        const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
        const MIN = 60_000;
        const at = (ms: number, tenant = "beta") => {
          const id = newId("evt", ms);
          return {
            id,
            version: ENVELOPE_VERSION,
            type: "webhook.received",
            tenant,
            agent: null,
            channel: "webhook",
            source: { binding: "hooks" },
            received_at: new Date(ms).toISOString(),
            trace_id: `T-${id.slice(4)}`,
            idempotency_key: null,
            data: {},
          } satisfies Envelope;
        };

        test("events count in the bucket of their received_at: a bucket holds its start, not its end; empty buckets are 0", async () => {
          const { storage } = await open();
          const times = [T0 - 1, T0, T0 + 1, T0 + MIN - 1, T0 + MIN, T0 + 3 * MIN + 5, T0 + 4 * MIN];
          for (const t of times) await insert(storage, at(t));
          const r = await storage.events.rates({ since: T0, until: T0 + 4 * MIN, bucketMs: MIN });
          expect(r.events).toEqual([3, 1, 0, 1]);
          expect(r.delivered).toEqual([0, 0, 0, 0]);
          expect(r.dead).toEqual([0, 0, 0, 0]);
          // A range that is not a whole number of buckets ends with a short one.
          expect((await storage.events.rates({ since: T0, until: T0 + MIN + 1, bucketMs: MIN })).events).toEqual([
            3, 1,
          ]);
          expect(
            (await storage.events.rates({ since: T0 + 10 * MIN, until: T0 + 12 * MIN, bucketMs: MIN })).events,
          ).toEqual([0, 0]);
        });

        test("rates count only the named tenants' events and deliveries; no tenants named counts every tenant's", async () => {
          const { storage } = await open();
          const a = at(T0 + 1, "alpha");
          const b1 = at(T0 + 2, "beta");
          const b2 = at(T0 + MIN + 2, "beta");
          const g = at(T0 + MIN + 3, "gamma");
          for (const e of [a, b1, b2, g]) await insert(storage, e);
          await storage.committer.run((tx) => {
            for (const e of [a, b1, g])
              storage.events.insertDeliveryTx(tx, {
                id: newId("dlv", T0 + 10),
                eventId: e.id,
                tenant: e.tenant,
                endpoint: "crm",
                state: "delivered",
                createdAt: T0 + 5,
                updatedAt: T0 + 10,
              });
          });
          const q = { since: T0, until: T0 + 2 * MIN, bucketMs: MIN };
          expect(await storage.events.rates(q)).toEqual({ events: [2, 2], delivered: [3, 0], dead: [0, 0] });
          expect(await storage.events.rates({ ...q, tenants: ["beta"] })).toEqual({
            events: [1, 1],
            delivered: [1, 0],
            dead: [0, 0],
          });
          expect(await storage.events.rates({ ...q, tenants: ["alpha", "gamma"] })).toEqual({
            events: [1, 1],
            delivered: [2, 0],
            dead: [0, 0],
          });
          expect(await storage.events.rates({ ...q, tenants: [] })).toEqual({
            events: [0, 0],
            delivered: [0, 0],
            dead: [0, 0],
          });
        });

        test("deliveries count as delivered or dead in the bucket of their last change; other states do not count", async () => {
          const { storage } = await open();
          const e = at(T0 - 10 * MIN);
          await insert(storage, e);
          const states: [DeliveryRow["state"], number][] = [
            ["delivered", T0],
            ["delivered", T0 + MIN - 1],
            ["dead", T0 + MIN],
            ["dead", T0 + 2 * MIN + 7],
            ["delivered", T0 + 3 * MIN],
            ["retrying", T0 + 1],
            ["pending", T0 + 1],
            ["discarded", T0 + 1],
            ["delivering", T0 + MIN + 1],
          ];
          await storage.committer.run((tx) => {
            states.forEach(([state, updatedAt], i) =>
              storage.events.insertDeliveryTx(tx, {
                id: newId("dlv", T0 + i),
                eventId: e.id,
                tenant: e.tenant,
                endpoint: `ep${i}`,
                state,
                createdAt: T0 - MIN,
                updatedAt,
              }),
            );
          });
          const r = await storage.events.rates({ since: T0, until: T0 + 3 * MIN, bucketMs: MIN });
          expect(r).toEqual({ events: [0, 0, 0], delivered: [2, 0, 0], dead: [0, 1, 1] });
        });

        test("a rates query with too many buckets, no bucket or an empty range is refused", async () => {
          const { storage } = await open();
          await expect(storage.events.rates({ since: 0, until: 1001, bucketMs: 1 })).rejects.toThrow(RangeError);
          await expect(storage.events.rates({ since: 0, until: 1000, bucketMs: 0 })).rejects.toThrow(RangeError);
          await expect(storage.events.rates({ since: 5, until: 5, bucketMs: 1 })).rejects.toThrow(RangeError);
          expect((await storage.events.rates({ since: 0, until: 1000, bucketMs: 1 })).events).toHaveLength(1000);
        });
      });
    });

    describe("approvals", () => {
      const park = (
        storage: Storage,
        over: { tenant?: string; expiresInMs?: number; onExpiry?: "approve" | "deny" } = {},
      ) =>
        storage.approvals.park({
          tenant: over.tenant ?? "beta",
          eventId: "evt_1",
          action: { kind: "dispatch", target: "crm" },
          policy: { name: "gate", rule: 0 },
          expiresInMs: over.expiresInMs ?? 60_000,
          onExpiry: over.onExpiry ?? "deny",
        });
      const decided = async (storage: Storage) =>
        (await storage.outbox.read(0, 100)).filter((e) => e.topic === APPROVAL_DECIDED).map((e) => e.payload);

      test("a parked action is pending and audited; a decision is recorded, audited and announced once", async () => {
        const { storage, clock } = await open();
        const a = await park(storage);
        expect(a).toMatchObject({
          tenant: "beta",
          eventId: "evt_1",
          state: "pending",
          createdAt: clock.now(),
          expiresAt: clock.now() + 60_000,
          onExpiry: "deny",
          decidedBy: null,
        });
        expect(await storage.approvals.get(a.id)).toEqual(a);
        const approved = await storage.approvals.decide(a.id, { approve: true, reason: "fine", actor: "token:tok_a" });
        expect(approved).toMatchObject({ state: "approved", decidedBy: "token:tok_a", reason: "fine" });
        expect(await storage.approvals.get(a.id)).toEqual(approved);
        await expect(storage.approvals.decide(a.id, { approve: false, reason: null, actor: "x" })).rejects.toThrow(
          "already approved",
        );
        await expect(
          storage.approvals.decide("apr_missing", { approve: true, reason: null, actor: "x" }),
        ).rejects.toThrow("not found");
        expect(await decided(storage)).toEqual([
          { id: a.id, state: "approved", outcome: "approve", event: "evt_1", action: a.action },
        ]);
        const actions = (await storage.audit.list({ limit: 10 })).map((e) => e.action);
        expect(actions).toEqual(["approval.approve", "approval.request"]);
      });

      test("an approval past its time expires with its declared outcome, and a late decision is refused", async () => {
        const { storage, clock } = await open();
        const late = await park(storage, { expiresInMs: 1000, onExpiry: "approve" });
        const due = await park(storage, { expiresInMs: 1000 });
        const later = await park(storage, { expiresInMs: 5000 });
        clock.advance(1000);
        await expect(storage.approvals.decide(late.id, { approve: false, reason: null, actor: "x" })).rejects.toThrow(
          "expired before it was decided",
        );
        expect(await storage.approvals.get(late.id)).toMatchObject({ state: "expired", decidedBy: "system" });
        expect(await storage.approvals.expireDue()).toBe(1);
        expect((await storage.approvals.get(due.id))?.state).toBe("expired");
        expect((await storage.approvals.get(later.id))?.state).toBe("pending");
        expect(await storage.approvals.expireDue()).toBe(0);
        expect((await decided(storage)).map((p) => (p as { outcome: string }).outcome)).toEqual(["approve", "deny"]);
      });

      test("approvals are listed newest first, by tenant and state, before a cursor", async () => {
        const { storage, clock } = await open();
        const a = await park(storage);
        clock.advance(1);
        const b = await park(storage, { tenant: "alpha" });
        clock.advance(1);
        const c = await park(storage);
        await storage.approvals.decide(c.id, { approve: false, reason: null, actor: "x" });
        const ids = (rows: { id: string }[]) => rows.map((r) => r.id);
        expect(ids(await storage.approvals.list({ limit: 10 }))).toEqual([c.id, b.id, a.id]);
        expect(ids(await storage.approvals.list({ tenants: ["beta"], limit: 10 }))).toEqual([c.id, a.id]);
        expect(ids(await storage.approvals.list({ state: "pending", limit: 10 }))).toEqual([b.id, a.id]);
        expect(ids(await storage.approvals.list({ before: b.id, limit: 10 }))).toEqual([a.id]);
        expect(ids(await storage.approvals.list({ limit: 1 }))).toEqual([c.id]);
      });

      test("parkTx commits with the unit that parks the task, or not at all", async () => {
        const { storage } = await open();
        const request = {
          tenant: "beta",
          action: { kind: "dispatch" },
          policy: {},
          expiresInMs: 1000,
          onExpiry: "deny" as const,
        };
        const parked = await storage.committer.run((tx) => storage.approvals.parkTx(tx, request));
        expect(await storage.approvals.get(parked.id)).toEqual(parked);
        let doomed = "";
        await storage.committer
          .run((tx) => {
            doomed = storage.approvals.parkTx(tx, request).id;
            throw new Error("no");
          })
          .catch(() => {});
        expect(await storage.approvals.get(doomed)).toBeNull();
        expect((await storage.audit.list({ action: "approval.request", limit: 10 })).length).toBe(1);
      });
    });

    describe("mail", () => {
      const accepted = (id: string, segment: string) => ({
        id,
        receivedAt: 1000,
        remoteIp: "192.0.2.1",
        helo: "mx.example",
        mailFrom: "",
        recipients: [{ address: "support@x.test", tenant: "beta", agent: "support", tag: null, binding: "mail" }],
        tls: true,
        size: 42,
        spool: { segment, offset: 10, length: 42 },
        trace: [{ name: "smtp.data", start: "2026-01-01T00:00:00.000Z", duration_ms: 2, outcome: "ok" as const }],
      });

      test("an accepted message is queued, then finished as processed or failed", async () => {
        const { storage, clock } = await open();
        await storage.committer.run((tx) => {
          storage.mail.insertTx(tx, accepted("msg_1", "seg-a"));
          storage.mail.insertTx(tx, accepted("msg_2", "seg-b"));
        });
        expect(await storage.mail.getMessage("msg_1")).toEqual({
          id: "msg_1",
          receivedAt: 1000,
          remoteIp: "192.0.2.1",
          helo: "mx.example",
          mailFrom: "",
          recipients: accepted("msg_1", "seg-a").recipients,
          tls: true,
          size: 42,
          spoolSegment: "seg-a",
          spoolOffset: 10,
          spoolLength: 42,
          trace: accepted("msg_1", "seg-a").trace,
          state: "queued",
          events: null,
          error: null,
          processedAt: null,
        });
        expect(await storage.mail.getMessage("msg_none")).toBeNull();
        await storage.committer.run((tx) => {
          storage.mail.finishTx(tx, "msg_1", { events: ["evt_a", "evt_b"] });
          storage.mail.finishTx(tx, "msg_2", { events: [], error: "the spooled message is gone" });
        });
        expect(await storage.mail.getMessage("msg_1")).toMatchObject({
          state: "processed",
          events: ["evt_a", "evt_b"],
          error: null,
          processedAt: clock.now(),
        });
        expect(await storage.mail.getMessage("msg_2")).toMatchObject({
          state: "failed",
          events: [],
          error: "the spooled message is gone",
        });
      });

      test("the spool segments in use are the ones some message names", async () => {
        const { storage } = await open();
        expect(await storage.mail.listSpoolSegments()).toEqual(new Set());
        await storage.committer.run((tx) => {
          storage.mail.insertTx(tx, accepted("msg_1", "seg-a"));
          storage.mail.insertTx(tx, accepted("msg_2", "seg-a"));
          storage.mail.insertTx(tx, accepted("msg_3", "seg-b"));
        });
        expect(await storage.mail.listSpoolSegments()).toEqual(new Set(["seg-a", "seg-b"]));
      });
    });

    describe("secrets", () => {
      const row = (name: string, version: number, over: Partial<SecretRow> = {}): SecretRow => ({
        tenant: "beta",
        name,
        version,
        masterKeyId: "mk_1",
        wrappedKey: new Uint8Array([1, 2, 3, version]),
        sealedValue: new Uint8Array([9, 8, 7, version]),
        createdAt: 1000 + version,
        createdBy: "token:tok_a",
        expiresAt: null,
        rotationPeriodMs: null,
        format: "whsec",
        ...over,
      });
      const plain = (rows: SecretRow[]) =>
        rows.map((r) => ({ ...r, wrappedKey: [...r.wrappedKey], sealedValue: [...r.sealedValue] }));

      test("versions are stored opaque and read back newest first; a version is written once", async () => {
        const { storage } = await open();
        const key = { tenant: "beta", name: "crm" };
        expect(await storage.committer.run((tx) => storage.secrets.existsTx(tx, key))).toBe(false);
        expect(await storage.secrets.versions(key)).toEqual([]);
        await storage.committer.run((tx) => storage.secrets.insertTx(tx, row("crm", 1, { rotationPeriodMs: 5000 })));
        expect(await storage.committer.run((tx) => storage.secrets.existsTx(tx, key))).toBe(true);
        await expect(storage.committer.run((tx) => storage.secrets.insertTx(tx, row("crm", 1)))).rejects.toThrow();
        await storage.committer.run((tx) => {
          storage.secrets.expireCurrentTx(tx, key, 9000);
          storage.secrets.insertTx(tx, row("crm", 2, { format: null }));
        });
        expect(plain(await storage.secrets.versions(key))).toEqual(
          plain([row("crm", 2, { format: null }), row("crm", 1, { rotationPeriodMs: 5000, expiresAt: 9000 })]),
        );
        expect(plain(await storage.committer.run((tx) => storage.secrets.versionsTx(tx, key)))).toEqual(
          plain(await storage.secrets.versions(key)),
        );
        // Only the current version gets an expiry; a superseded one keeps its own.
        await storage.committer.run((tx) => storage.secrets.expireCurrentTx(tx, key, 20_000));
        expect((await storage.secrets.versions(key)).map((r) => r.expiresAt)).toEqual([20_000, 9000]);
        expect(await storage.secrets.versions({ tenant: "alpha", name: "crm" })).toEqual([]);
      });

      test("secrets are named by tenant and name, once each, in order", async () => {
        const { storage } = await open();
        await storage.committer.run((tx) => {
          storage.secrets.insertTx(tx, row("zeta", 1));
          storage.secrets.insertTx(tx, row("alpha", 1));
          storage.secrets.insertTx(tx, row("alpha", 2));
          storage.secrets.insertTx(tx, { ...row("only", 1), tenant: "acme" });
        });
        expect(await storage.secrets.names()).toEqual([
          { tenant: "acme", name: "only" },
          { tenant: "beta", name: "alpha" },
          { tenant: "beta", name: "zeta" },
        ]);
        expect(await storage.secrets.names("beta")).toEqual([
          { tenant: "beta", name: "alpha" },
          { tenant: "beta", name: "zeta" },
        ]);
      });

      test("a master-key rotation finds the versions under other keys, in batches, and re-wraps them", async () => {
        const { storage } = await open();
        await storage.committer.run((tx) => {
          for (let v = 1; v <= 3; v++) storage.secrets.insertTx(tx, row("crm", v));
          storage.secrets.insertTx(tx, row("new", 1, { masterKeyId: "mk_2" }));
        });
        let moved = 0;
        for (;;) {
          const n = await storage.committer.run((tx) => {
            const batch = storage.secrets.sealedWithOtherKeyTx(tx, "mk_2", 2);
            for (const r of batch)
              storage.secrets.rewrapTx(tx, r, { masterKeyId: "mk_2", wrappedKey: new Uint8Array([7, r.version]) });
            return batch.length;
          });
          if (n === 0) break;
          expect(n).toBeLessThanOrEqual(2);
          moved += n;
        }
        expect(moved).toBe(3);
        const crm = await storage.secrets.versions({ tenant: "beta", name: "crm" });
        expect(crm.map((r) => [r.masterKeyId, [...r.wrappedKey], [...r.sealedValue]])).toEqual([
          ["mk_2", [7, 3], [9, 8, 7, 3]],
          ["mk_2", [7, 2], [9, 8, 7, 2]],
          ["mk_2", [7, 1], [9, 8, 7, 1]],
        ]);
      });
    });

    describe("blobs", () => {
      const hex = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

      test("a blob is named by its content's hash, stored once, read back, and deleted", async () => {
        const { storage } = await open();
        const bytes = new TextEncoder().encode("%PDF-1.4 attachment");
        const sha256 = hex(bytes);
        expect(await storage.blobs.has(sha256)).toBe(false);
        expect(await storage.blobs.get(sha256)).toBeNull();
        expect(await storage.blobs.put(bytes)).toEqual({ sha256, size: bytes.byteLength });
        expect(await storage.blobs.put(bytes)).toEqual({ sha256, size: bytes.byteLength });
        expect(await storage.blobs.has(sha256)).toBe(true);
        expect(await storage.blobs.get(sha256)).toEqual(bytes);
        const empty = await storage.blobs.put(new Uint8Array());
        expect(empty.size).toBe(0);
        expect(await storage.blobs.get(empty.sha256)).toEqual(new Uint8Array());
        expect(await storage.blobs.delete([sha256, sha256, hex(new Uint8Array([1]))])).toBe(1);
        expect(await storage.blobs.has(sha256)).toBe(false);
        expect(await storage.blobs.removeTemps()).toBe(0);
      });

      test("a name that is not 64 lower-case hex digits is refused", async () => {
        const { storage } = await open();
        await expect(storage.blobs.get("../../etc/passwd")).rejects.toThrow("64 lower-case hex");
        await expect(storage.blobs.has("A".repeat(64))).rejects.toThrow("64 lower-case hex");
        await expect(storage.blobs.delete(["x"])).rejects.toThrow("64 lower-case hex");
      });

      test("blobs outlive a restart", async () => {
        const h = await open();
        const { sha256 } = await h.storage.blobs.put(new Uint8Array([1, 2, 3]));
        const again = await h.reopen();
        expect(await again.blobs.get(sha256)).toEqual(new Uint8Array([1, 2, 3]));
      });
    });

    describe("resources in a unit of work", () => {
      const key = { tenant: "beta", kind: "endpoints", name: "crm" };

      test("put creates, updates under preconditions, and leaves an unchanged spec alone", async () => {
        const { storage, clock } = await open();
        const generation = storage.resources.generation;
        const created = await storage.resources.transact((tx) =>
          storage.resources.putTx(tx, key, { url: "https://a" }, { mode: "create", actor: "t" }),
        );
        expect(created).toMatchObject({ changed: true, created: true, record: { ...key, resourceVersion: 1 } });
        expect(storage.resources.generation).toBeGreaterThan(generation);
        await expect(
          storage.resources.transact((tx) => storage.resources.putTx(tx, key, {}, { mode: "create", actor: "t" })),
        ).rejects.toThrow("already exists");
        await expect(
          storage.resources.transact((tx) =>
            storage.resources.putTx(
              tx,
              key,
              { url: "https://b" },
              { mode: "update", pre: { ifMatch: [7] }, actor: "t" },
            ),
          ),
        ).rejects.toThrow("resource_version 1");
        const same = await storage.resources.transact((tx) =>
          storage.resources.putTx(tx, key, { url: "https://a" }, { mode: "upsert", actor: "t" }),
        );
        expect(same).toMatchObject({ changed: false, created: false, record: { resourceVersion: 1 } });
        clock.advance(10);
        const updated = await storage.resources.transact((tx) =>
          storage.resources.putTx(tx, key, { url: "https://b" }, { mode: "update", pre: { ifMatch: [1] }, actor: "u" }),
        );
        expect(updated.record).toMatchObject({
          resourceVersion: 2,
          spec: { url: "https://b" },
          updatedAt: clock.now(),
        });
        expect((await storage.resources.history(key)).map((h) => [h.resourceVersion, h.op, h.actor])).toEqual([
          [1, "create", "t"],
          [2, "update", "u"],
        ]);
      });

      test("delete and allTx see the unit's own writes; a re-created resource continues the versions", async () => {
        const { storage } = await open();
        const seen = await storage.resources.transact((tx) => {
          storage.resources.putTx(tx, key, { url: "https://a" }, { mode: "create", actor: "t" });
          const all = storage.resources.allTx(tx).map((r) => r.name);
          const deleted = storage.resources.deleteTx(tx, key, { actor: "t" });
          return { all, deleted, after: storage.resources.allTx(tx).length };
        });
        expect(seen).toMatchObject({ all: ["crm"], deleted: { resourceVersion: 1 }, after: 0 });
        await expect(
          storage.resources.transact((tx) => storage.resources.deleteTx(tx, key, { actor: "t" })),
        ).rejects.toThrow("not found");
        const again = await storage.resources.transact((tx) =>
          storage.resources.putTx(tx, key, { url: "https://c" }, { mode: "create", actor: "t" }),
        );
        expect(again.record.resourceVersion).toBe(3);
      });

      test("a unit that throws writes no resource and moves no generation", async () => {
        const { storage } = await open();
        const generation = storage.resources.generation;
        await expect(
          storage.resources.transact((tx) => {
            storage.resources.putTx(tx, key, { url: "https://a" }, { mode: "create", actor: "t" });
            throw new Error("refused");
          }),
        ).rejects.toThrow("refused");
        expect(await storage.resources.get(key)).toBeNull();
        expect(storage.resources.generation).toBe(generation);
      });
    });

    describe("audit log: entries in a unit of work, and listed", () => {
      test("an entry appended in a unit commits with it, or not at all", async () => {
        const { storage } = await open();
        const entry = await storage.committer.run((tx) =>
          storage.audit.appendTx(tx, { actor: "system", action: "test.kept" }),
        );
        expect(entry).toMatchObject({ seq: 1, action: "test.kept", tenant: null, target: null, details: {} });
        await storage.committer
          .run((tx) => {
            storage.audit.appendTx(tx, { actor: "system", action: "test.lost" });
            throw new Error("no");
          })
          .catch(() => {});
        const next = await storage.audit.append({ actor: "system", action: "test.next" });
        expect(next.seq).toBe(2);
        expect(next.prevHash).toBe(entry.hash);
        expect((await storage.audit.list({ limit: 10 })).map((e) => e.action)).toEqual(["test.next", "test.kept"]);
        expect((await storage.audit.verify()).ok).toBe(true);
      });

      test("entries are listed newest first, filtered by tenant, action, actor, event and time, before a cursor", async () => {
        const { storage, clock } = await open();
        const rows: [string, string | null, string, string | null, Record<string, unknown>][] = [
          ["token:a", "beta", "secret.set", "beta/x", {}],
          ["system", "beta", "delivery.attempt", "dlv_1", { event: "evt_9" }],
          ["token:b", "alpha", "event.replay", "evt_9", {}],
          ["token:a", null, "token.create", "tok_1", {}],
        ];
        for (const [actor, tenant, action, target, details] of rows) {
          clock.advance(1000);
          await storage.audit.append({ actor, tenant, action, target, details });
        }
        const seqs = (entries: { seq: number }[]) => entries.map((e) => e.seq);
        expect(seqs(await storage.audit.list({ limit: 10 }))).toEqual([4, 3, 2, 1]);
        expect(seqs(await storage.audit.list({ limit: 2 }))).toEqual([4, 3]);
        expect(seqs(await storage.audit.list({ before: 3, limit: 10 }))).toEqual([2, 1]);
        expect(seqs(await storage.audit.list({ tenants: ["beta"], limit: 10 }))).toEqual([2, 1]);
        expect(seqs(await storage.audit.list({ action: "token.create", limit: 10 }))).toEqual([4]);
        expect(seqs(await storage.audit.list({ actor: "token:a", limit: 10 }))).toEqual([4, 1]);
        expect(seqs(await storage.audit.list({ event: "evt_9", limit: 10 }))).toEqual([3, 2]);
        const t0 = (await storage.audit.list({ limit: 10 })).at(-1)!.at;
        expect(seqs(await storage.audit.list({ since: t0 + 1000, until: t0 + 2000, limit: 10 }))).toEqual([3, 2]);
        expect((await storage.audit.list({ action: "secret.set", limit: 1 }))[0]).toMatchObject({
          actor: "token:a",
          tenant: "beta",
          target: "beta/x",
          decision: null,
          details: {},
        });
      });
    });

    describe("console users and sessions", () => {
      const newUser = (username: string, over: Partial<NewUser> = {}): NewUser => ({
        username,
        passwordHash: `$argon2id$v=19$m=65536,t=2,p=1$${username}`,
        role: "member",
        tenants: ["beta"],
        ...over,
      });
      const session = (id: string, userId: string, expiresAt: number) => ({
        id,
        userId,
        csrf: `csrf-${id}`,
        expiresAt,
      });

      test("a user is created, read by name and id, listed by name after a cursor, and counted", async () => {
        const { storage, clock } = await open();
        expect(await storage.users.count()).toBe(0);
        const ann = await storage.committer.run((tx) => storage.users.createTx(tx, newUser("ann")));
        expect(isId(ann.id, "usr")).toBe(true);
        expect(ann).toMatchObject({
          username: "ann",
          role: "member",
          tenants: ["beta"],
          createdAt: clock.now(),
          updatedAt: clock.now(),
          failedCount: 0,
          lockedUntil: null,
          lockLevel: 0,
        });
        await storage.committer.run((tx) => {
          storage.users.createTx(tx, newUser("cy", { role: "admin", tenants: [] }));
          storage.users.createTx(tx, newUser("bo"));
        });
        expect(await storage.users.get("ann")).toEqual(ann);
        expect(await storage.users.getById(ann.id)).toEqual(ann);
        expect(await storage.committer.run((tx) => storage.users.getTx(tx, "ann"))).toEqual(ann);
        expect(await storage.users.get("nobody")).toBeNull();
        expect(await storage.users.getById("usr_00000000000000000000000000")).toBeNull();
        expect((await storage.users.list({ limit: 10 })).map((u) => u.username)).toEqual(["ann", "bo", "cy"]);
        expect((await storage.users.list({ limit: 1, after: "ann" })).map((u) => u.username)).toEqual(["bo"]);
        expect(await storage.users.count()).toBe(3);
        expect(await storage.committer.run((tx) => storage.users.countTx(tx))).toBe(3);
      });

      test("a username is unique: a second one is a conflict and its unit writes nothing", async () => {
        const { storage } = await open();
        await storage.committer.run((tx) => storage.users.createTx(tx, newUser("ann")));
        const second = storage.committer.run((tx) => {
          storage.audit.appendTx(tx, { actor: "system", action: "test.lost" });
          return storage.users.createTx(tx, newUser("ann", { role: "admin", tenants: [] }));
        });
        await expect(second).rejects.toMatchObject({ kind: "conflict" });
        expect((await storage.users.get("ann"))?.role).toBe("member");
        expect(await storage.audit.list({ limit: 10 })).toEqual([]);
      });

      test("an update changes the given fields and updatedAt; a delete removes the user, rolled back with its unit", async () => {
        const { storage, clock } = await open();
        const ann = await storage.committer.run((tx) => storage.users.createTx(tx, newUser("ann")));
        clock.advance(5000);
        const changed = await storage.committer.run((tx) =>
          storage.users.updateTx(tx, "ann", {
            passwordHash: "$argon2id$new",
            failedCount: 3,
            lockedUntil: 99,
            lockLevel: 2,
          }),
        );
        expect(changed).toEqual({
          ...ann,
          passwordHash: "$argon2id$new",
          failedCount: 3,
          lockedUntil: 99,
          lockLevel: 2,
          updatedAt: ann.createdAt + 5000,
        });
        expect(await storage.users.get("ann")).toEqual(changed!);
        await storage.committer.run((tx) => storage.users.updateTx(tx, "ann", { role: "admin", tenants: [] }));
        expect(await storage.users.get("ann")).toMatchObject({
          role: "admin",
          tenants: [],
          passwordHash: "$argon2id$new",
        });
        expect(
          await storage.committer.run((tx) => storage.users.updateTx(tx, "nobody", { failedCount: 1 })),
        ).toBeNull();

        await storage.committer
          .run((tx) => {
            storage.users.deleteTx(tx, "ann");
            throw new Error("no");
          })
          .catch(() => {});
        expect(await storage.users.get("ann")).not.toBeNull();
        expect((await storage.committer.run((tx) => storage.users.deleteTx(tx, "ann")))?.id).toBe(ann.id);
        expect(await storage.users.get("ann")).toBeNull();
        expect(await storage.users.count()).toBe(0);
        expect(await storage.committer.run((tx) => storage.users.deleteTx(tx, "ann"))).toBeNull();
        // The name is free again.
        await storage.committer.run((tx) => storage.users.createTx(tx, newUser("ann")));
      });

      test("a session is created, read, touched and revoked once; revoking all of a user's ends only theirs", async () => {
        const { storage, clock } = await open();
        const [ann, bo] = await storage.committer.run((tx) => [
          storage.users.createTx(tx, newUser("ann")),
          storage.users.createTx(tx, newUser("bo")),
        ]);
        const t0 = clock.now();
        const s1 = await storage.committer.run((tx) =>
          storage.sessions.createTx(tx, session("a".repeat(64), ann!.id, t0 + 60_000)),
        );
        expect(s1).toEqual({
          id: "a".repeat(64),
          userId: ann!.id,
          csrf: `csrf-${"a".repeat(64)}`,
          createdAt: t0,
          lastSeenAt: t0,
          expiresAt: t0 + 60_000,
          revokedAt: null,
        });
        expect(await storage.sessions.get(s1.id)).toEqual(s1);
        expect(await storage.sessions.get("f".repeat(64))).toBeNull();

        expect(await storage.sessions.touch(s1.id, t0 + 1000)).toBe(true);
        // Activity only moves forward: a late, older touch does not take it back.
        expect(await storage.sessions.touch(s1.id, t0 + 500)).toBe(true);
        expect((await storage.sessions.get(s1.id))?.lastSeenAt).toBe(t0 + 1000);
        expect(await storage.sessions.touch("f".repeat(64), t0)).toBe(false);

        clock.advance(2000);
        expect((await storage.committer.run((tx) => storage.sessions.revokeTx(tx, s1.id)))?.revokedAt).toBe(t0 + 2000);
        clock.advance(2000);
        expect((await storage.committer.run((tx) => storage.sessions.revokeTx(tx, s1.id)))?.revokedAt).toBe(t0 + 2000);
        expect(await storage.committer.run((tx) => storage.sessions.revokeTx(tx, "f".repeat(64)))).toBeNull();

        await storage.committer.run((tx) => {
          storage.sessions.createTx(tx, session("b".repeat(64), ann!.id, t0 + 60_000));
          storage.sessions.createTx(tx, session("c".repeat(64), ann!.id, t0 + 60_000));
          storage.sessions.createTx(tx, session("d".repeat(64), bo!.id, t0 + 60_000));
        });
        expect(await storage.committer.run((tx) => storage.sessions.revokeAllOfUserTx(tx, ann!.id))).toBe(2);
        for (const id of ["b", "c"]) expect((await storage.sessions.get(id.repeat(64)))?.revokedAt).toBe(clock.now());
        expect((await storage.sessions.get(s1.id))?.revokedAt).toBe(t0 + 2000);
        expect((await storage.sessions.get("d".repeat(64)))?.revokedAt).toBeNull();
      });

      test("purging deletes revoked, absolutely expired and idle sessions and keeps live ones", async () => {
        const { storage, clock } = await open();
        const ann = await storage.committer.run((tx) => storage.users.createTx(tx, newUser("ann")));
        const t0 = clock.now();
        await storage.committer.run((tx) => {
          storage.sessions.createTx(tx, session("a".repeat(64), ann.id, t0 + 1000)); // past its end
          storage.sessions.createTx(tx, session("b".repeat(64), ann.id, t0 + 60_000)); // revoked
          storage.sessions.createTx(tx, session("c".repeat(64), ann.id, t0 + 60_000)); // idle
          storage.sessions.createTx(tx, session("d".repeat(64), ann.id, t0 + 60_000)); // live
          storage.sessions.revokeTx(tx, "b".repeat(64));
        });
        await storage.sessions.touch("d".repeat(64), t0 + 5000);
        expect(await storage.sessions.purge(t0 + 2000, t0 + 4000)).toBe(3);
        expect(await storage.sessions.get("d".repeat(64))).not.toBeNull();
        for (const id of ["a", "b", "c"]) expect(await storage.sessions.get(id.repeat(64))).toBeNull();
        expect(await storage.sessions.purge(t0 + 2000, t0 + 4000)).toBe(0);
      });

      test("deleting a user ends its sessions", async () => {
        const { storage, clock } = await open();
        const ann = await storage.committer.run((tx) => storage.users.createTx(tx, newUser("ann")));
        await storage.committer.run((tx) =>
          storage.sessions.createTx(tx, session("a".repeat(64), ann.id, clock.now() + 60_000)),
        );
        await storage.committer.run((tx) => storage.users.deleteTx(tx, "ann"));
        const after = await storage.sessions.get("a".repeat(64));
        expect(after === null || after.revokedAt !== null).toBe(true);
        // A new user of the same name does not inherit them.
        const again = await storage.committer.run((tx) => storage.users.createTx(tx, newUser("ann")));
        expect(again.id).not.toBe(ann.id);
        expect(await storage.committer.run((tx) => storage.sessions.revokeAllOfUserTx(tx, again.id))).toBe(0);
      });
    });
    describe("agent pool rows", () => {
      const runtime = (id: string, at: number) => ({
        id,
        isolation: "process" as const,
        tokenHash: `hash-${id}`,
        dir: `/data/agents/rt/${id}`,
        socket: `/data/agents/run/${id}.sock`,
        cold: false,
        createdAt: at,
      });
      const claim = (agent: string, tenant = "acme") => ({
        tenant,
        agent,
        template: "helper",
        templateVersion: 3,
        userConfig: { greeting: "hi" },
        cold: false,
      });

      test("a runtime starts, becomes ready and is claimed once; transitions from another state are refused", async () => {
        const { storage, clock } = await open();
        const t0 = clock.now();
        const rt = await storage.agents.insertRuntime(runtime("rt_a", t0));
        expect(rt.state).toBe("starting");
        expect(rt.destroying).toBe(false);
        expect(await storage.agents.getRuntime("rt_a")).toEqual(rt);
        expect(await storage.agents.transitionRuntime("rt_a", ["ready"], { state: "claimed" })).toBeNull();
        const ready = await storage.agents.transitionRuntime("rt_a", ["starting"], {
          state: "ready",
          pid: 4242,
          readyAt: t0 + 5,
          heartbeatAt: t0 + 5,
        });
        expect(ready).toMatchObject({ state: "ready", pid: 4242, readyAt: t0 + 5 });
        clock.advance(100);
        const claimed = await storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim("bot")));
        expect(claimed).toMatchObject({
          id: "rt_a",
          state: "claimed",
          tenant: "acme",
          agent: "bot",
          template: "helper",
          templateVersion: 3,
          userConfig: { greeting: "hi" },
          claimedAt: t0 + 100,
          cold: false,
        });
        // Every field as the store reads it anywhere else (JSON decoded, booleans as booleans).
        expect(claimed).toEqual((await storage.agents.getRuntime("rt_a"))!);
        expect(await storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim("other")))).toBeNull();
        expect(await storage.agents.findClaimed("acme", "bot")).toEqual(claimed);
        expect(await storage.agents.findClaimed("acme", "other")).toBeNull();
        expect(await storage.agents.transitionRuntime("missing", ["ready"], { state: "stuck" })).toBeNull();
      });

      test("concurrent claims take distinct runtimes, oldest ready first, and an agent name is claimed once per tenant", async () => {
        const { storage, clock } = await open();
        const t0 = clock.now();
        for (let i = 0; i < 5; i++) {
          await storage.agents.insertRuntime(runtime(`rt_${i}`, t0));
          // Ready in reverse order of ids: the claim goes by ready time.
          await storage.agents.transitionRuntime(`rt_${i}`, ["starting"], { state: "ready", readyAt: t0 + 10 - i });
        }
        const first = await storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim("a0")));
        expect(first?.id).toBe("rt_4");
        const rest = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim(`a${i + 1}`))),
          ),
        );
        const got = rest.filter((r) => r !== null).map((r) => r!.id);
        expect(got.length).toBe(4);
        expect(new Set([...got, first!.id]).size).toBe(5);
        expect(rest.filter((r) => r === null).length).toBe(2);

        await storage.agents.insertRuntime(runtime("rt_x", t0));
        await storage.agents.transitionRuntime("rt_x", ["starting"], { state: "ready", readyAt: t0 });
        await expect(storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim("a0")))).rejects.toMatchObject(
          {
            kind: "conflict",
          },
        );
        // The same name in another tenant is another agent.
        expect((await storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim("a0", "beta"))))?.id).toBe(
          "rt_x",
        );
        // Claiming a started runtime directly (a cold claim) is refused as well for a taken name.
        await storage.agents.insertRuntime(runtime("rt_y", t0));
        await expect(
          storage.agents.transitionRuntime("rt_y", ["starting"], { state: "claimed", tenant: "acme", agent: "a1" }),
        ).rejects.toMatchObject({ kind: "conflict" });
        // Once released (deleted), the name is free again.
        await storage.agents.transitionRuntime(first!.id, ["claimed"], { state: "deleted", deletedAt: t0 });
        expect(
          await storage.agents.transitionRuntime("rt_y", ["starting"], {
            state: "claimed",
            tenant: "acme",
            agent: "a0",
            cold: true,
          }),
        ).toMatchObject({ state: "claimed", cold: true });
      });

      test("several nodes on one database: a claim takes only its node's runtimes, and the live and listed ones are filtered by node", async () => {
        const { storage, clock } = await open();
        const t0 = clock.now();
        for (const [id, node, at] of [
          ["rt_n1", "host-a:/data", t0 + 1],
          ["rt_n2", "host-b:/data", t0 + 2],
          ["rt_n3", "host-a:/data", t0 + 3],
        ] as const) {
          expect((await storage.agents.insertRuntime({ ...runtime(id, t0), node })).node).toBe(node);
          await storage.agents.transitionRuntime(id, ["starting"], { state: "ready", readyAt: at });
        }
        expect((await storage.agents.getRuntime("rt_n2"))?.node).toBe("host-b:/data");
        // Node b's oldest ready runtime is its own, although node a's is older.
        const b = await storage.committer.run((tx) =>
          storage.agents.claimReadyTx(tx, { ...claim("b1"), node: "host-b:/data" }),
        );
        expect(b).toMatchObject({ id: "rt_n2", node: "host-b:/data", state: "claimed" });
        expect(
          await storage.committer.run((tx) =>
            storage.agents.claimReadyTx(tx, { ...claim("b2"), node: "host-b:/data" }),
          ),
        ).toBeNull();
        const a = await storage.committer.run((tx) =>
          storage.agents.claimReadyTx(tx, { ...claim("a1"), node: "host-a:/data" }),
        );
        expect(a?.id).toBe("rt_n1");
        expect((await storage.agents.liveRuntimes("host-a:/data")).map((r) => r.id)).toEqual(["rt_n1", "rt_n3"]);
        expect((await storage.agents.liveRuntimes("host-b:/data")).map((r) => r.id)).toEqual(["rt_n2"]);
        expect((await storage.agents.liveRuntimes()).map((r) => r.id)).toEqual(["rt_n1", "rt_n2", "rt_n3"]);
        expect(
          (await storage.agents.listRuntimes({ state: "ready", node: "host-a:/data", limit: 10 })).map((r) => r.id),
        ).toEqual(["rt_n3"]);
        expect(await storage.agents.listRuntimes({ state: "ready", node: "host-b:/data", limit: 10 })).toEqual([]);
        // Without a node (SQLite's one node), any ready runtime.
        expect((await storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim("any"))))?.id).toBe("rt_n3");
      });

      test("runtimes are listed by tenant and state, counted by state, and live ones exclude the deleted", async () => {
        const { storage, clock } = await open();
        const t0 = clock.now();
        for (const id of ["rt_1", "rt_2", "rt_3", "rt_4"]) await storage.agents.insertRuntime(runtime(id, t0));
        await storage.agents.transitionRuntime("rt_2", ["starting"], { state: "ready", readyAt: t0 });
        await storage.agents.transitionRuntime("rt_3", ["starting"], { state: "ready", readyAt: t0 + 1 });
        await storage.committer.run((tx) => storage.agents.claimReadyTx(tx, claim("bot")));
        await storage.agents.transitionRuntime("rt_4", ["starting"], { state: "deleted", deletedAt: t0 });
        expect(await storage.agents.countByState()).toEqual({
          starting: 1,
          ready: 1,
          claimed: 1,
          stuck: 0,
          deleted: 1,
        });
        expect((await storage.agents.liveRuntimes()).map((r) => r.id)).toEqual(["rt_1", "rt_2", "rt_3"]);
        expect((await storage.agents.listRuntimes({ limit: 10 })).map((r) => r.id)).toEqual(["rt_1", "rt_2", "rt_3"]);
        expect((await storage.agents.listRuntimes({ limit: 10, state: "deleted" })).map((r) => r.id)).toEqual(["rt_4"]);
        expect((await storage.agents.listRuntimes({ limit: 10, tenants: ["acme"] })).map((r) => r.id)).toEqual([
          "rt_2",
        ]);
        expect(await storage.agents.listRuntimes({ limit: 10, tenants: ["beta"] })).toEqual([]);
        expect((await storage.agents.listRuntimes({ limit: 1, after: "rt_1" })).map((r) => r.id)).toEqual(["rt_2"]);
      });

      test("heartbeats are recorded in one batch and never move back in time", async () => {
        const { storage, clock } = await open();
        const t0 = clock.now();
        await storage.agents.insertRuntime(runtime("rt_1", t0));
        await storage.agents.insertRuntime(runtime("rt_2", t0));
        await storage.agents.heartbeat([
          { id: "rt_1", at: t0 + 10 },
          { id: "rt_2", at: t0 + 20 },
          { id: "rt_gone", at: t0 },
        ]);
        await storage.agents.heartbeat([{ id: "rt_1", at: t0 + 5 }]);
        expect((await storage.agents.getRuntime("rt_1"))?.heartbeatAt).toBe(t0 + 10);
        expect((await storage.agents.getRuntime("rt_2"))?.heartbeatAt).toBe(t0 + 20);
        await storage.agents.heartbeat([]);
      });

      test("tools are provisioned, found by their resource while active, and left unsettled by a crash are listed", async () => {
        const { storage, clock } = await open();
        const t0 = clock.now();
        const tool = (runtimeId: string, address: string) => ({
          runtimeId,
          tenant: "acme",
          tool: "reply",
          plugin: "email",
          provisioning: "pool" as const,
          state: "creating" as const,
          resourceId: address,
          config: { address },
          secretRef: null,
        });
        const [a, b] = await storage.committer.run((tx) => [
          storage.agents.insertToolTx(tx, tool("rt_1", "bot@acme.example")),
          storage.agents.insertToolTx(tx, tool("rt_2", "other@acme.example")),
        ]);
        expect(a!.id).toMatch(/^tl_/);
        expect(a!.createdAt).toBe(t0);
        expect(await storage.agents.activeToolsByResource("email", "bot@acme.example")).toEqual([]);
        expect((await storage.agents.unsettledTools()).map((t) => t.id)).toEqual([a!.id, b!.id]);
        clock.advance(50);
        const active = await storage.agents.updateTool(a!.id, { state: "active" }, ["creating"]);
        expect(active).toMatchObject({ state: "active", updatedAt: t0 + 50, createdAt: t0 });
        expect(await storage.agents.updateTool(a!.id, { state: "active" }, ["creating"])).toBeNull();
        expect(
          (await storage.agents.activeToolsByResource("email", "bot@acme.example")).map((t) => t.runtimeId),
        ).toEqual(["rt_1"]);
        expect(await storage.agents.activeToolsByResource("webhook", "bot@acme.example")).toEqual([]);
        expect((await storage.agents.unsettledTools()).map((t) => t.id)).toEqual([b!.id]);
        await storage.agents.updateTool(a!.id, { state: "destroying" });
        expect(await storage.agents.activeToolsByResource("email", "bot@acme.example")).toEqual([]);
        await storage.agents.updateTool(a!.id, { state: "destroyed" });
        expect(await storage.agents.listTools("rt_1")).toEqual([
          expect.objectContaining({ id: a!.id, state: "destroyed", config: { address: "bot@acme.example" } }),
        ]);
        expect(await storage.committer.run((tx) => storage.agents.listToolsTx(tx, "rt_2"))).toHaveLength(1);
        expect((await storage.agents.getTool(b!.id))?.resourceId).toBe("other@acme.example");
      });

      test("tool calls move on from the states given and are listed by runtime and by event", async () => {
        const { storage, clock } = await open();
        const call = (eventId: string | null) => ({
          runtimeId: "rt_1",
          tenant: "acme",
          eventId,
          tool: "http",
          args: { path: "/x" },
          state: "awaiting_approval" as const,
          approvalId: "apr_1",
          decision: { effect: "require_approval", policy: "p" },
          result: null,
          error: null,
        });
        const [c1, c2] = await storage.committer.run((tx) => [
          storage.agents.insertToolCallTx(tx, call("evt_1")),
          storage.agents.insertToolCallTx(tx, call(null)),
        ]);
        expect(c1!.id).toMatch(/^tc_/);
        expect(c1!.finishedAt).toBeNull();
        clock.advance(10);
        const done = await storage.committer.run((tx) =>
          storage.agents.transitionToolCallTx(tx, c1!.id, ["awaiting_approval"], {
            state: "done",
            result: { status: 200 },
            finishedAt: tx.now,
          }),
        );
        expect(done).toMatchObject({ state: "done", result: { status: 200 }, finishedAt: clock.now() });
        expect(
          await storage.committer.run((tx) =>
            storage.agents.transitionToolCallTx(tx, c1!.id, ["awaiting_approval"], { state: "failed" }),
          ),
        ).toBeNull();
        expect((await storage.agents.getToolCall(c1!.id))?.state).toBe("done");
        expect(await storage.committer.run((tx) => storage.agents.getToolCallTx(tx, c2!.id))).toMatchObject({
          eventId: null,
          args: { path: "/x" },
        });
        expect((await storage.agents.listToolCalls({ runtimeId: "rt_1", limit: 10 })).map((c) => c.id)).toEqual([
          c1!.id,
          c2!.id,
        ]);
        expect((await storage.agents.listToolCalls({ eventId: "evt_1", limit: 10 })).map((c) => c.id)).toEqual([
          c1!.id,
        ]);
        expect(await storage.agents.listToolCalls({ runtimeId: "rt_2", limit: 10 })).toEqual([]);
      });

      test("runtimes, tools and calls survive a restart", async () => {
        const { storage, clock } = await open();
        await storage.agents.insertRuntime(runtime("rt_1", clock.now()));
        await storage.agents.transitionRuntime("rt_1", ["starting"], { destroying: true, error: "stuck" });
        const again = await h!.reopen();
        expect(await again.agents.getRuntime("rt_1")).toMatchObject({ destroying: true, error: "stuck" });
      });
    });
  });
}
