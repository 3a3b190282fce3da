import { expect, test } from "bun:test";
import { isoTime, isoTimeMs } from "./iso-time.ts";

test("before isoTime wrote anything, no text is known (a fresh process reads every one back with Date.parse)", async () => {
  const fresh = await import(`./iso-time.ts?fresh=${Date.now()}`);
  expect(fresh.isoTimeMs("2026-12-06T20:40:11.123Z")).toBeUndefined();
});

test("isoTime writes toISOString's text, and gives back the milliseconds of the texts of its last two minutes", () => {
  const at = Date.parse("2026-12-06T20:40:11.123Z");
  expect(isoTime(at)).toBe("2026-12-06T20:40:11.123Z");
  expect(isoTime(at + 1)).toBe(new Date(at + 1).toISOString());
  expect(isoTimeMs("2026-12-06T20:40:11.123Z")).toBe(at);
  expect(isoTimeMs(new Date(at + 1).toISOString())).toBe(at + 1);
  // Any canonical text of the same minute reads back, whether or not isoTime wrote it.
  expect(isoTimeMs("2026-12-06T20:40:59.999Z")).toBe(Date.parse("2026-12-06T20:40:59.999Z"));
  expect(isoTimeMs("2026-12-06T20:40:00.000Z")).toBe(Date.parse("2026-12-06T20:40:00.000Z"));
  // The next minute's: the one before is still known.
  const later = Date.parse("2026-12-06T20:41:00.007Z");
  expect(isoTime(later)).toBe("2026-12-06T20:41:00.007Z");
  expect(isoTimeMs("2026-12-06T20:41:00.007Z")).toBe(later);
  expect(isoTimeMs("2026-12-06T20:40:11.123Z")).toBe(at);
  // Anything else is for the caller to parse: another form, another minute, not a time.
  expect(isoTimeMs("2026-12-06T20:40:11Z")).toBeUndefined();
  expect(isoTimeMs("2026-12-06T20:40:11.123+00:00")).toBeUndefined();
  expect(isoTimeMs("2031-01-01T00:00:00.000Z")).toBeUndefined();
  expect(isoTimeMs("2026-12-06T20:40:6x.123Z")).toBeUndefined();
  expect(isoTimeMs("2026-12-06T20:40:60.123Z")).toBeUndefined();
  expect(isoTimeMs("2026-12-06T20:40:11.1x3Z")).toBeUndefined();
  // Two minutes on, the first is forgotten.
  isoTime(Date.parse("2026-12-06T20:42:30.000Z"));
  expect(isoTimeMs("2026-12-06T20:40:11.123Z")).toBeUndefined();
});

test("isoTime is toISOString for every kind of time: fractions, before 1970, six-digit years, every millisecond of a minute", () => {
  const base = Date.parse("2026-12-06T23:59:00.000Z");
  for (let i = 0; i < 60_000; i += 7) expect(isoTime(base + i)).toBe(new Date(base + i).toISOString());
  for (const at of [
    0,
    -1,
    -0.5,
    0.9,
    1.5,
    -61_000.25,
    1e12 + 0.999,
    Date.parse("1969-12-31T23:59:59.999Z"),
    8.64e15,
    -8.64e15,
    253402300800000,
    -62198755200000,
  ]) {
    expect(isoTime(at)).toBe(new Date(at).toISOString());
    const iso = isoTime(at);
    const back = isoTimeMs(iso);
    if (back !== undefined) expect(back).toBe(Date.parse(iso));
  }
  expect(() => isoTime(Number.NaN)).toThrow(RangeError);
  expect(() => isoTime(8.64e15 + 1)).toThrow(RangeError);
});
