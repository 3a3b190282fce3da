import { afterEach, describe, expect, test } from "bun:test";
import type { Job } from "../store/contract.ts";
import { tempStorage, until } from "../../test/helpers/storage.ts";
import { type JobHandler, JobRunner, PermanentJobError, RetryLaterError } from "./job-runner.ts";
import { silentLogger } from "../core/log.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup(handlers: Record<string, JobHandler>, concurrency = 4) {
  const storage = tempStorage();
  const outcomes: string[] = [];
  const runner = new JobRunner({
    queue: storage.queue,
    handlers: new Map(Object.entries(handlers)),
    log: silentLogger,
    concurrency,
    visibilityMs: 60_000,
    // A long poll: the runner must be woken by enqueues, not find work by polling.
    pollMs: 60_000,
    onOutcome: (_kind, outcome) => outcomes.push(outcome),
  });
  runner.start();
  cleanups.push(
    () => storage.dispose(),
    () => runner.stop(1000),
  );
  return { storage, runner, outcomes };
}

describe("JobRunner", () => {
  test("an enqueued job is picked up at once and acked when its handler succeeds", async () => {
    const seen: Job[] = [];
    const { storage, outcomes } = setup({ "t.ok": async (job) => void seen.push(job) });
    const { id } = await storage.queue.enqueue({ kind: "t.ok", payload: { hello: "world" } });
    await until("the job to finish", () => outcomes.length === 1, 2000);
    expect(seen[0]).toMatchObject({ id, payload: { hello: "world" }, attempt: 1 });
    expect((await storage.queue.get(id))?.state).toBe("done");
  });

  test("a handler that throws schedules a retry; a permanent error dead-letters", async () => {
    const { storage, outcomes } = setup({
      "t.flaky": async () => {
        throw new Error("connection refused");
      },
      "t.gone": async () => {
        throw new PermanentJobError("410 Gone");
      },
    });
    const flaky = await storage.queue.enqueue({ kind: "t.flaky", payload: null });
    const gone = await storage.queue.enqueue({ kind: "t.gone", payload: null });
    await until("both outcomes", () => outcomes.length === 2);
    expect(await storage.queue.get(flaky.id)).toMatchObject({
      state: "available",
      lastError: "Error: connection refused",
    });
    expect(await storage.queue.get(gone.id)).toMatchObject({ state: "dead", deadReason: "permanent" });
  });

  test("a handler's Retry-After sets the next attempt time", async () => {
    const { storage, outcomes } = setup({
      "t.busy": async () => {
        throw new RetryLaterError("429", 3_600_000);
      },
    });
    const before = Date.now();
    const { id } = await storage.queue.enqueue({ kind: "t.busy", payload: null });
    await until("the retry", () => outcomes.length === 1);
    expect((await storage.queue.get(id))!.runAt).toBeGreaterThanOrEqual(before + 3_600_000);
  });

  test("a handler that waits for something local (wait: true) runs again after exactly its delay, not the backoff, and well before the next poll", async () => {
    const runs: number[] = [];
    const { storage } = setup({
      "t.wait": async () => {
        runs.push(Date.now());
        if (runs.length < 4) throw new RetryLaterError("endpoint busy", 50, true);
      },
    });
    const { id } = await storage.queue.enqueue({ kind: "t.wait", payload: null });
    // The backoff would have put the 3rd run seconds out, and the poll is a minute: both ruled out here.
    await until(
      "four runs, the last acked",
      async () => runs.length === 4 && (await storage.queue.get(id))?.state === "done",
      5000,
    );
    for (let i = 1; i < runs.length; i++) expect(runs[i]! - runs[i - 1]!).toBeGreaterThanOrEqual(45);
  });

  test("never runs more jobs at once than its concurrency", async () => {
    let running = 0;
    let peak = 0;
    const { storage, outcomes } = setup(
      {
        "t.slow": async () => {
          peak = Math.max(peak, ++running);
          await Bun.sleep(5);
          running--;
        },
      },
      3,
    );
    await Promise.all(Array.from({ length: 30 }, (_, i) => storage.queue.enqueue({ kind: "t.slow", payload: i })));
    await until("all 30 jobs", () => outcomes.length === 30);
    expect(peak).toBe(3);
    expect((await storage.queue.depth()).done).toBe(30);
  });

  test("a job born leased in a reserved place runs once its commit is in, with what its creator handed along, and is acked", async () => {
    const seen: { job: Job; local: unknown }[] = [];
    const { storage, runner, outcomes } = setup({
      "t.born": async (job, ctx) => void seen.push({ job, local: ctx.local }),
    });
    const slot = runner.reserve("t.born")!;
    expect(slot.lease.visibilityMs).toBe(60_000);
    const job = await storage.committer.run((tx) =>
      storage.queue.enqueueLeasedTx(tx, { kind: "t.born", payload: { n: 1 } }, slot.lease),
    );
    expect((await storage.queue.get(job!.id))?.state).toBe("leased");
    slot.start(job!, { bytes: "in memory" });
    await until("the born job to finish", () => outcomes.length === 1, 2000);
    expect(seen).toEqual([{ job: job!, local: { bytes: "in memory" } }]);
    expect((await storage.queue.get(job!.id))?.state).toBe("done");
    // A claimed job never carries one.
    await storage.queue.enqueue({ kind: "t.born", payload: { n: 2 } });
    await until("the claimed job", () => outcomes.length === 2, 2000);
    expect(seen[1]!.local).toBeUndefined();
  });

  test("a finished job does not send the runner looking for work nobody announced: an enqueue and a lease that filled every place do", async () => {
    const storage = tempStorage();
    let leases = 0;
    // The storage's queue, with its leases counted.
    const queue: typeof storage.queue = Object.create(storage.queue);
    queue.lease = (opts) => {
      leases++;
      return storage.queue.lease(opts);
    };
    let done = 0;
    const runner = new JobRunner({
      queue,
      handlers: new Map([["t.born", async () => void done++]]),
      log: silentLogger,
      concurrency: 2,
      visibilityMs: 60_000,
      pollMs: 60_000,
    });
    runner.start();
    cleanups.push(
      () => storage.dispose(),
      () => runner.stop(1000),
    );
    await until("the start-up lease", () => leases === 1);
    // Born leased, as the SMTP accept makes its jobs: each one's end frees a place, and used to
    // cost a lease (a claim statement in a commit) that found nothing.
    for (let i = 0; i < 20; i++) {
      const slot = runner.reserve("t.born")!;
      const job = await storage.committer.run((tx) =>
        storage.queue.enqueueLeasedTx(tx, { kind: "t.born", payload: i }, slot.lease),
      );
      slot.start(job!);
      await until("the born job", () => done === i + 1);
    }
    await Bun.sleep(20);
    expect(leases).toBe(1);
    // Five enqueued at once, two places: each lease fills them, so the runner looks again as they end.
    await storage.committer.run((tx) => {
      for (let i = 0; i < 5; i++) storage.queue.enqueueTx(tx, { kind: "t.born", payload: i });
    });
    await until("the enqueued jobs", () => done === 25, 2000);
    expect((await storage.queue.depth()).done).toBe(25);
    expect(leases).toBeGreaterThanOrEqual(4);
    expect(leases).toBeLessThanOrEqual(6);
  });

  test("reserved places count against the concurrency until started or released; none for a kind without a handler or after stop", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let running = 0;
    let peak = 0;
    const { storage, runner, outcomes } = setup(
      {
        "t.gated": async () => {
          peak = Math.max(peak, ++running);
          await gate;
          running--;
        },
      },
      2,
    );
    expect(runner.reserve("t.other")).toBeNull();
    const a = runner.reserve("t.gated")!;
    const b = runner.reserve("t.gated")!;
    expect(runner.reserve("t.gated")).toBeNull();
    // Work enqueued meanwhile waits: both places are taken.
    const queued = await storage.queue.enqueue({ kind: "t.gated", payload: null });
    await Bun.sleep(50);
    expect((await storage.queue.get(queued.id))?.state).toBe("available");
    // A place whose commit failed is free again, and the waiting job takes it.
    b.release();
    b.release();
    await until("the queued job to start", async () => (await storage.queue.get(queued.id))?.state === "leased");
    const born = await storage.committer.run((tx) =>
      storage.queue.enqueueLeasedTx(tx, { kind: "t.gated", payload: null }, a.lease),
    );
    a.start(born!);
    a.start(born!); // once only
    expect(runner.reserve("t.gated")).toBeNull();
    release();
    await until("both jobs", () => outcomes.length === 2, 2000);
    expect(peak).toBe(2);
    expect(runner.reserve("t.gated")).not.toBeNull();
    await runner.stop(1000);
    expect(runner.reserve("t.gated")).toBeNull();
  });

  test("a born job started after stop began is not run: it keeps its lease for recovery", async () => {
    const seen: Job[] = [];
    const { storage, runner } = setup({ "t.late": async (job) => void seen.push(job) });
    const slot = runner.reserve("t.late")!;
    const job = await storage.committer.run((tx) =>
      storage.queue.enqueueLeasedTx(tx, { kind: "t.late", payload: null }, slot.lease),
    );
    await runner.stop(1000);
    slot.start(job!);
    await Bun.sleep(20);
    expect(seen).toEqual([]);
    expect((await storage.queue.get(job!.id))?.state).toBe("leased");
  });

  test("leaves jobs of kinds it has no handler for", async () => {
    const { storage, outcomes } = setup({ "t.mine": async () => {} });
    const other = await storage.queue.enqueue({ kind: "t.theirs", payload: null });
    await storage.queue.enqueue({ kind: "t.mine", payload: null });
    await until("my job", () => outcomes.length === 1);
    expect((await storage.queue.get(other.id))?.state).toBe("available");
  });

  test("stop waits for the jobs in flight to finish", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const order: string[] = [];
    const { storage, runner } = setup({
      "t.gated": async () => {
        await gate;
        order.push("job finished");
      },
    });
    const { id } = await storage.queue.enqueue({ kind: "t.gated", payload: null });
    await until("the job to start", async () => (await storage.queue.get(id))?.state === "leased");
    const stopping = runner.stop(5000).then((cutOff) => (order.push("stopped"), cutOff));
    // A turn of the event loop: a stop that did not wait for the job would have resolved by now.
    await new Promise((r) => setImmediate(r));
    order.push("released");
    release();
    expect(await stopping).toBe(0);
    expect(order).toEqual(["released", "job finished", "stopped"]);
    expect((await storage.queue.get(id))?.state).toBe("done");
  });

  test("at the stop deadline a stuck job is aborted and keeps its lease for recovery", async () => {
    let aborted = false;
    const { storage, runner } = setup({
      "t.stuck": (_job, { signal }) =>
        new Promise<void>((_, reject) =>
          signal.addEventListener("abort", () => {
            aborted = true;
            reject(signal.reason);
          }),
        ),
    });
    const { id } = await storage.queue.enqueue({ kind: "t.stuck", payload: null });
    await until("the job to start", async () => (await storage.queue.get(id))?.state === "leased");
    expect(await runner.stop(50)).toBe(1);
    expect(aborted).toBe(true);
  });
});
