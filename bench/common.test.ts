import { expect, test } from "bun:test";
import { quantile } from "./common.ts";

test("quantile is the nearest rank: p99 of 100 values is the 99th, not the largest; p50 the 50th", () => {
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  expect(quantile(hundred, 0.99)).toBe(99);
  expect(quantile(hundred, 0.5)).toBe(50);
  expect(quantile(hundred, 1)).toBe(100);
  expect(quantile(hundred, 0)).toBe(1);
  expect(
    quantile(
      Array.from({ length: 1000 }, (_, i) => i + 1),
      0.99,
    ),
  ).toBe(990);
  expect(quantile([7], 0.99)).toBe(7);
  expect(quantile([], 0.5)).toBeNaN();
});
