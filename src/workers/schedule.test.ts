import { describe, expect, test } from "bun:test";
import { ManualClock } from "../core/clock.ts";
import { dailyAt, every, hourlyAt, ManualTimers } from "./schedule.ts";

const local = (...parts: [number, number, number, number, number]) => new Date(...parts).getTime();

describe("schedules", () => {
  test("every(ms) comes ms after the time it is asked at", () => {
    expect(every(5000)(1_000)).toBe(6_000);
  });

  test("hourlyAt(17) is the next 17 past the hour, local time, never the time asked at", () => {
    expect(hourlyAt(17)(local(2026, 10, 21, 14, 0))).toBe(local(2026, 10, 21, 14, 17));
    expect(hourlyAt(17)(local(2026, 10, 21, 14, 17))).toBe(local(2026, 10, 21, 15, 17));
    expect(hourlyAt(17)(local(2026, 10, 21, 23, 30))).toBe(local(2026, 10, 22, 0, 17));
  });

  test("dailyAt(9, 0) is the next 9 o'clock, local time: today before it, tomorrow from it on", () => {
    expect(dailyAt(9, 0)(local(2026, 10, 21, 8, 59))).toBe(local(2026, 10, 21, 9, 0));
    expect(dailyAt(9, 0)(local(2026, 10, 21, 9, 0))).toBe(local(2026, 10, 22, 9, 0));
    expect(dailyAt(9, 0)(local(2026, 11, 31, 10, 0))).toBe(local(2027, 0, 1, 9, 0));
  });
});

describe("ManualTimers", () => {
  test("advance fires each timer due on the way, in time order, with the clock at its time; a cancelled one never", () => {
    const clock = new ManualClock(0);
    const timers = new ManualTimers(clock);
    const fired: [string, number][] = [];
    timers.after(300, () => fired.push(["c", clock.now()]));
    timers.after(100, () => fired.push(["a", clock.now()]));
    const cancel = timers.after(200, () => fired.push(["cancelled", clock.now()]));
    cancel();
    timers.advance(250);
    expect(fired).toEqual([["a", 100]]);
    expect(clock.now()).toBe(250);
    timers.advance(50);
    expect(fired).toEqual([
      ["a", 100],
      ["c", 300],
    ]);
    expect(timers.size).toBe(0);
  });
});
