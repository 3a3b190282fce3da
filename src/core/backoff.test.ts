import { describe, expect, test } from "bun:test";
import { DEFAULT_BACKOFF, retryDelay } from "./backoff.ts";

describe("retryDelay", () => {
  test("doubles per attempt, jittered within [d/2, d)", () => {
    for (const [attempt, d] of [
      [1, 1000],
      [2, 2000],
      [3, 4000],
      [10, 512_000],
    ] as const) {
      expect(retryDelay(attempt, () => 0)).toBe(d / 2);
      expect(retryDelay(attempt, () => 0.999999)).toBe(Math.floor(d / 2 + 0.999999 * (d / 2)));
      expect(retryDelay(attempt, () => 0.999999)).toBeLessThan(d);
    }
  });

  test("never exceeds the cap, however many attempts", () => {
    expect(retryDelay(60, () => 0.999999)).toBeLessThan(DEFAULT_BACKOFF.capMs);
    expect(retryDelay(60, () => 0)).toBe(DEFAULT_BACKOFF.capMs / 2);
  });

  test("honours a longer Retry-After, clamped to the cap", () => {
    expect(retryDelay(1, () => 0, DEFAULT_BACKOFF, 30_000)).toBe(30_000);
    expect(retryDelay(5, () => 0, DEFAULT_BACKOFF, 10)).toBe(8000);
    expect(retryDelay(1, () => 0, DEFAULT_BACKOFF, 10 * DEFAULT_BACKOFF.capMs)).toBe(DEFAULT_BACKOFF.capMs);
  });

  test("two jobs failing together retry at different times", () => {
    let seed = 1;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const delays = new Set(Array.from({ length: 20 }, () => retryDelay(4, random)));
    expect(delays.size).toBeGreaterThan(15);
  });
});
