import { expect, test } from "bun:test";
import { spanOf, spanSince } from "./envelope.ts";

test("a span: its start as ISO time, its duration to the microsecond, a detail only when there is one", () => {
  expect(spanOf("route", Date.UTC(2026, 11, 6), 1.23456789, "ok", "crm")).toEqual({
    name: "route",
    start: "2026-12-06T00:00:00.000Z",
    duration_ms: 1.235,
    outcome: "ok",
    detail: "crm",
  });
  expect(spanOf("spool.write", 0, 2)).toEqual({
    name: "spool.write",
    start: "1970-01-01T00:00:00.000Z",
    duration_ms: 2,
    outcome: "ok",
  });
  const since = spanSince("ingress.commit", 0, performance.now() - 5, "error");
  expect(since.duration_ms).toBeGreaterThanOrEqual(5);
  expect(since).toMatchObject({ name: "ingress.commit", outcome: "error" });
  expect(since).not.toHaveProperty("detail");
});
