import { expect, test } from "bun:test";
import { spanOf } from "../events/envelope.ts";
import { spansFrom, spansJson, storedSpans } from "./spans.ts";

const at = Date.parse("2026-12-06T17:59:41.882Z");

test("a span made by spanOf is stored as a tuple with its start in ms, and read back equal", () => {
  const spans = [spanOf("ingress.verify", at, 0.0004), spanOf("route", at + 1, 0.01, "ok", "receiver")];
  expect(storedSpans(spans)).toEqual([
    ["ingress.verify", at, 0, "ok"],
    ["route", at + 1, 0.01, "ok", "receiver"],
  ]);
  expect(spansFrom(JSON.parse(spansJson(spans)))).toEqual(spans);
});

test("the stored form is about half the bytes of the objects it replaces, details and all", () => {
  const spans = [
    spanOf("policy.eval", at, 0.001, "ok", "allow (no policy matched)"),
    spanOf("secrets.lease", at, 0.004, "ok", "vault:beta/receiver"),
    spanOf("delivery", at, 1.598, "ok", "attempt 1: HTTP 200"),
    spanOf("state.store", at, 0.037, "ok", "delivered, attempt 1 recorded"),
  ];
  expect(spansJson(spans).length).toBeLessThan(JSON.stringify(spans).length * 0.55);
});

test("a start that is not the canonical ISO form is kept as an object, so it reads back as given", () => {
  const odd = [
    { name: "a", start: "2026-12-06T17:59:41Z", duration_ms: 1, outcome: "ok" as const },
    { name: "b", start: "2026-12-06T17:59:41.882+00:00", duration_ms: 1, outcome: "ok" as const },
    { name: "c", start: "not a time", duration_ms: 1, outcome: "error" as const, detail: "x" },
  ];
  expect(storedSpans(odd)).toEqual(odd);
  expect(spansFrom(JSON.parse(spansJson(odd)))).toEqual(odd);
});

test("rows written before (objects), a mix of both, and garbage read as spans or none", () => {
  const old = { name: "smtp.data", start: "2026-01-01T00:00:00.000Z", duration_ms: 2, outcome: "ok" as const };
  expect(spansFrom([old])).toEqual([old]);
  expect(spansFrom([old, ["route", at, 1, "ok", ""]])).toEqual([
    old,
    { name: "route", start: "2026-12-06T17:59:41.882Z", duration_ms: 1, outcome: "ok", detail: "" },
  ]);
  expect(spansFrom(null)).toEqual([]);
  expect(spansFrom("[]")).toEqual([]);
});
