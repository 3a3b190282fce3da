import { expect, test } from "bun:test";
import { barOf, type TimelineSpan } from "./timeline.tsx";

const span = (startMs: number, durationMs: number): TimelineSpan => ({ name: "s", startMs, durationMs, outcome: "ok" });

test("a bar's offset and width are proportional to the span's start and duration", () => {
  expect(barOf(span(1000, 25), 1000, 100)).toEqual({ x: 0, width: 250 });
  expect(barOf(span(1050, 50), 1000, 100)).toEqual({ x: 500, width: 500 });
});

test("a span too short to see still shows, and no bar leaves the track", () => {
  expect(barOf(span(1000, 0), 1000, 100)).toEqual({ x: 0, width: 2 });
  const last = barOf(span(1100, 0), 1000, 100);
  expect(last.x + last.width).toBeLessThanOrEqual(1000);
  expect(last.width).toBeGreaterThan(0);
});
