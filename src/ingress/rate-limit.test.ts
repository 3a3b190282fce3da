import { describe, expect, test } from "bun:test";
import { ManualClock } from "../core/clock.ts";
import { RateLimiter } from "./rate-limit.ts";

describe("RateLimiter", () => {
  test("a burst, then one token per 1/rate, per key", () => {
    const clock = new ManualClock(0);
    const r = new RateLimiter(60, 3, clock);
    expect([r.take("a"), r.take("a"), r.take("a"), r.take("a")]).toEqual([true, true, true, false]);
    expect(r.take("b")).toBe(true);
    expect(r.retryAfterMs("a")).toBe(1000);
    clock.advance(999);
    expect(r.take("a")).toBe(false);
    clock.advance(1);
    expect(r.take("a")).toBe(true);
    clock.advance(999_000);
    expect([r.take("a"), r.take("a"), r.take("a"), r.take("a")]).toEqual([true, true, true, false]);
  });

  test("full buckets are forgotten, so many keys do not stay in memory", () => {
    const clock = new ManualClock(0);
    const r = new RateLimiter(600, 10, clock);
    for (let i = 0; i < 9_999; i++) r.take(`10.0.${i >> 8}.${i & 255}`);
    expect(r.size).toBe(9_999);
    clock.advance(60_000);
    r.take("10.9.9.9");
    expect(r.size).toBe(1);
  });
});
