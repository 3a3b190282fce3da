import { expect, test } from "bun:test";
import { nextCron, parseCron } from "./cron.ts";

const at = (y: number, mo: number, d: number, h: number, mi: number) => new Date(y, mo - 1, d, h, mi).getTime();
const next = (text: string, now: number) => nextCron(parseCron(text)!, now);

test("the default backup schedule names 03:17 every day, the next one after now", () => {
  expect(next("17 3 * * *", at(2026, 12, 1, 12, 0))).toBe(at(2026, 12, 2, 3, 17));
  expect(next("17 3 * * *", at(2026, 12, 2, 3, 16))).toBe(at(2026, 12, 2, 3, 17));
  expect(next("17 3 * * *", at(2026, 12, 2, 3, 17))).toBe(at(2026, 12, 3, 3, 17));
});

test("steps, ranges, lists and weekdays (7 is Sunday) are understood", () => {
  expect(next("*/15 * * * *", at(2026, 12, 1, 12, 1))).toBe(at(2026, 12, 1, 12, 15));
  expect(next("0 9-17/4 * * *", at(2026, 12, 1, 14, 0))).toBe(at(2026, 12, 1, 17, 0));
  expect(next("30 2 * * 7", at(2026, 12, 1, 0, 0))).toBe(at(2026, 12, 6, 2, 30)); // 2026-12-06 is a Sunday
  expect(next("0 0 1,15 * *", at(2026, 12, 2, 0, 0))).toBe(at(2026, 12, 15, 0, 0));
  expect(next("0 0 29 2 *", at(2026, 3, 1, 0, 0))).toBe(at(2028, 2, 29, 0, 0));
});

test("both day fields restricted: a day matching either, as in cron", () => {
  // The 10th, or any Monday: 2026-12-07 is a Monday.
  expect(next("0 0 10 * 1", at(2026, 12, 1, 0, 0))).toBe(at(2026, 12, 7, 0, 0));
});

test("text that is not five valid fields is refused; a date that never comes gives null", () => {
  for (const bad of ["", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"])
    expect(parseCron(bad)).toBeNull();
  expect(next("0 0 30 2 *", at(2026, 1, 1, 0, 0))).toBeNull();
});
