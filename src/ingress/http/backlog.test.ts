/**
 * The ingress's high-water check (backlog.ts) with a ManualClock and a depth source the test
 * answers by hand: how often the queue is asked, and what a request sees meanwhile.
 */
import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../core/clock.ts";
import { BACKLOG_SAMPLE_MS, Backlog } from "./backlog.ts";

const HIGH_WATER = 1000;

/** A depth source whose samples stay pending until the test answers (or fails) them. */
function depthSource() {
  const pending: { resolve: (n: number) => void; reject: (e: Error) => void }[] = [];
  return {
    sample: () => new Promise<number>((resolve, reject) => pending.push({ resolve, reject })),
    get asked() {
      return pending.length;
    },
    /** Answer the latest sample, and let the backlog take the answer in. */
    async answer(depth: number) {
      pending.at(-1)!.resolve(depth);
      await settled();
    },
    async fail() {
      pending.at(-1)!.reject(new Error("database is locked"));
      await settled();
    },
  };
}

/** Every promise callback already queued has run (a macrotask runs after all of them). */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup() {
  const clock = new ManualClock();
  const queue = depthSource();
  const backlog = new Backlog(queue.sample, HIGH_WATER, clock);
  return { clock, queue, backlog };
}

describe("Backlog", () => {
  test("the first request starts a sample and is admitted on depth 0 while it is under way", async () => {
    const { queue, backlog } = setup();
    expect(backlog.full()).toBe(false);
    expect(queue.asked).toBe(1);
    await queue.answer(HIGH_WATER * 10);
    expect(backlog.current()).toBe(HIGH_WATER * 10);
    expect(backlog.full()).toBe(true);
  });

  test("requests are shed at and above the high-water mark, admitted below it", async () => {
    const { clock, queue, backlog } = setup();
    for (const [depth, full] of [
      [HIGH_WATER - 1, false],
      [HIGH_WATER, true],
      [HIGH_WATER + 1, true],
      [0, false],
    ] as const) {
      backlog.current();
      await queue.answer(depth);
      expect(backlog.full(), `depth ${depth}`).toBe(full);
      clock.advance(BACKLOG_SAMPLE_MS + 1);
    }
  });

  test("the queue is asked at most once per sample interval, however many requests arrive", async () => {
    const { clock, queue, backlog } = setup();
    for (let i = 0; i < 1000; i++) backlog.full();
    expect(queue.asked).toBe(1);
    await queue.answer(5);
    for (let i = 0; i < 1000; i++) backlog.full();
    clock.advance(BACKLOG_SAMPLE_MS);
    backlog.full();
    expect(queue.asked).toBe(1);
    clock.advance(1);
    backlog.full();
    expect(queue.asked).toBe(2);
  });

  test("a slow sample is not joined by a second one, and the interval runs from its answer", async () => {
    const { clock, queue, backlog } = setup();
    backlog.current();
    clock.advance(10 * BACKLOG_SAMPLE_MS);
    backlog.current();
    expect(queue.asked).toBe(1);
    await queue.answer(7);
    clock.advance(BACKLOG_SAMPLE_MS);
    expect(backlog.current()).toBe(7);
    expect(queue.asked).toBe(1);
    clock.advance(1);
    backlog.current();
    expect(queue.asked).toBe(2);
  });

  test("a failed sample keeps the last depth and is tried again after the interval", async () => {
    const { clock, queue, backlog } = setup();
    backlog.current();
    await queue.answer(HIGH_WATER);
    clock.advance(BACKLOG_SAMPLE_MS + 1);
    backlog.current();
    await queue.fail();
    expect(backlog.current()).toBe(HIGH_WATER);
    expect(backlog.full()).toBe(true);
    expect(queue.asked).toBe(2);
    clock.advance(BACKLOG_SAMPLE_MS + 1);
    backlog.current();
    expect(queue.asked).toBe(3);
    await queue.answer(0);
    expect(backlog.full()).toBe(false);
  });
});
