import { describe, expect, test } from "bun:test";
import { ManualClock } from "../core/clock.ts";
import { RateLimit } from "./throttle.ts";

const MIB = 2 ** 20;

/** A RateLimit whose sleeps move a ManualClock, and the sleeps it asked for. */
function limited(bytesPerSecond: number, slackMs?: number) {
  const clock = new ManualClock();
  const sleeps: number[] = [];
  const limit = new RateLimit(
    bytesPerSecond,
    clock,
    (ms) => {
      sleeps.push(ms);
      clock.advance(ms);
    },
    slackMs,
  );
  return { clock, sleeps, limit };
}

describe("RateLimit", () => {
  test("1 MiB writes at 64 MiB/s take 1/64 s each: 640 MiB take 10 s less one chunk", () => {
    const { clock, sleeps, limit } = limited(64 * MIB);
    const t0 = clock.now();
    for (let i = 0; i < 640; i++) limit.take(MIB);
    // The first chunk goes at once; each later one waits for the one before it to be due.
    expect(sleeps.length).toBe(639);
    for (const s of sleeps) expect(s).toBeCloseTo(1000 / 64, 6);
    expect(clock.now() - t0).toBeCloseTo(10_000 - 1000 / 64, 3);
    expect(limit.sleptMs).toBeCloseTo(10_000 - 1000 / 64, 3);
  });

  test("the bytes written by any time never exceed the rate's share plus one chunk and the slack", () => {
    const rate = 10 * MIB;
    const { clock, limit } = limited(rate, 50);
    const t0 = clock.now();
    let written = 0;
    for (let i = 0; i < 500; i++) {
      const chunk = ((i * 7919) % 1024) * 1024 + 512; // sizes from 512 B to 1 MiB
      // Work between writes of up to 20 ms (below the slack: never a credit beyond it).
      clock.advance((i * 13) % 20);
      limit.take(chunk);
      written += chunk;
      const allowed = (rate * (clock.now() - t0 + 50)) / 1000 + chunk;
      expect(written).toBeLessThanOrEqual(allowed);
    }
  });

  test("a writer slower than the rate is never slept", () => {
    const { clock, sleeps, limit } = limited(64 * MIB);
    for (let i = 0; i < 100; i++) {
      limit.take(MIB);
      clock.advance(100); // 10 MiB/s of its own
    }
    expect(sleeps).toEqual([]);
  });

  test("after a stall the writer gets at most the slack as credit, not a burst to catch up", () => {
    const { clock, sleeps, limit } = limited(MIB, 50);
    limit.take(MIB);
    clock.advance(60_000); // blocked a minute: 60 MiB of "credit" it must not get
    sleeps.length = 0;
    for (let i = 0; i < 4; i++) limit.take(MIB);
    // The first goes at once (50 ms of slack); the next three each wait a second, less the slack for the first.
    expect(sleeps).toEqual([950, 1000, 1000]);
  });

  test("0 bytes per second is no cap", () => {
    const { sleeps, limit } = limited(0);
    for (let i = 0; i < 1000; i++) limit.take(MIB);
    expect(sleeps).toEqual([]);
    expect(limit.sleptMs).toBe(0);
  });
});
