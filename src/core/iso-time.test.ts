import { expect, test } from "bun:test";
import { isoTime, isoTimeMs } from "./iso-time.ts";

test("isoTime writes toISOString's text, and gives back the milliseconds of the texts it made", () => {
  const at = Date.parse("2026-12-06T20:40:11.123Z");
  expect(isoTime(at)).toBe("2026-12-06T20:40:11.123Z");
  expect(isoTime(at + 1)).toBe(new Date(at + 1).toISOString());
  // Both are still known after the memo of the last one moved on.
  expect(isoTimeMs("2026-12-06T20:40:11.123Z")).toBe(at);
  expect(isoTimeMs(new Date(at + 1).toISOString())).toBe(at + 1);
  // A text it did not make (another form, or one never written) is for the caller to parse.
  expect(isoTimeMs("2026-12-06T20:40:11Z")).toBeUndefined();
  expect(isoTimeMs("2031-01-01T00:00:00.000Z")).toBeUndefined();
});

test("the table is bounded: thousands of milliseconds later the oldest are forgotten, the newest kept", () => {
  const base = Date.parse("2026-12-06T00:00:00.000Z");
  for (let i = 0; i < 10_000; i++) isoTime(base + i);
  expect(isoTimeMs(new Date(base).toISOString())).toBeUndefined();
  expect(isoTimeMs(new Date(base + 9_999).toISOString())).toBe(base + 9_999);
});
