import { describe, expect, test } from "bun:test";
import { ManualClock } from "../core/clock.ts";
import { BUSY_RETRY_MAX_MS, busyRetryMs, EndpointSlots, type Schedule } from "./endpoint-slots.ts";

/** Timers that fire when the manual clock is moved past them, in time order. */
class ManualTimers {
  private timers: { at: number; fn: () => void }[] = [];
  constructor(readonly clock: ManualClock) {}
  readonly schedule: Schedule = (fn, ms) => {
    const timer = { at: this.clock.now() + ms, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  };
  advance(ms: number): void {
    const until = this.clock.now() + ms;
    for (;;) {
      const next = this.timers.filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.clock.advance(next.at - this.clock.now());
      next.fn();
    }
    this.clock.advance(until - this.clock.now());
  }
  get pending(): number {
    return this.timers.length;
  }
}

function slots(workers = 0) {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(clock);
  return { clock, timers, slots: new EndpointSlots({ clock, workers, schedule: timers.schedule }) };
}

/** Whether a promise has settled yet, and how, without waiting for it. */
function track<T>(p: Promise<T>): { settled: boolean; value?: T } {
  const state: { settled: boolean; value?: T } = { settled: false };
  void p.then((value) => {
    state.settled = true;
    state.value = value;
  });
  return state;
}
/** Let promise callbacks run (no time passes). */
const settle = () => new Promise<void>((resolve) => queueMicrotask(resolve));

describe("EndpointSlots", () => {
  test("places are taken at once up to the endpoint's limit, then it is busy; each endpoint counts its own", () => {
    const { slots: s } = slots();
    expect([s.tryAcquire("a/x", 2), s.tryAcquire("a/x", 2), s.tryAcquire("a/x", 2)]).toEqual([true, true, false]);
    expect(s.inFlight("a/x")).toBe(2);
    expect(s.tryAcquire("a/y", 2)).toBe(true);
    s.release("a/x");
    expect(s.inFlight("a/x")).toBe(1);
    expect(s.tryAcquire("a/x", 2)).toBe(true);
    s.release("a/x");
    s.release("a/x");
    expect(s.inFlight("a/x")).toBe(0);
  });

  test("a released place is handed to the job that waited longest, which keeps the in-flight count", async () => {
    const { slots: s } = slots();
    expect(s.tryAcquire("a/x", 1)).toBe(true);
    const first = track(s.acquire("a/x", 1, 2000));
    const second = track(s.acquire("a/x", 1, 2000));
    await settle();
    expect([first.settled, second.settled, s.waiting("a/x")]).toEqual([false, false, 2]);

    s.release("a/x");
    await settle();
    expect(first).toEqual({ settled: true, value: true });
    expect(second.settled).toBe(false);
    expect(s.inFlight("a/x")).toBe(1);

    s.release("a/x");
    await settle();
    expect(second).toEqual({ settled: true, value: true });
    expect([s.inFlight("a/x"), s.waiting("a/x")]).toEqual([1, 0]);
    s.release("a/x");
    expect(s.inFlight("a/x")).toBe(0);
  });

  test("while a job waits in line, a newcomer that does not wait finds the endpoint busy even after a release", async () => {
    const { slots: s } = slots();
    s.tryAcquire("a/x", 1);
    const waiting = track(s.acquire("a/x", 1, 2000));
    expect(s.tryAcquire("a/x", 1)).toBe(false);
    s.release("a/x");
    await settle();
    expect(waiting.value).toBe(true);
    expect(s.tryAcquire("a/x", 1)).toBe(false);
  });

  test("a job that waited its time in line gives its worker back (false) and leaves the line", async () => {
    const { slots: s, timers } = slots();
    s.tryAcquire("a/x", 1);
    const waiting = track(s.acquire("a/x", 1, 2000));
    timers.advance(1999);
    await settle();
    expect(waiting.settled).toBe(false);
    timers.advance(1);
    await settle();
    expect(waiting).toEqual({ settled: true, value: false });
    expect(s.waiting("a/x")).toBe(0);
    // The place it did not get stays with its holder, then is free.
    expect(s.inFlight("a/x")).toBe(1);
    s.release("a/x");
    expect(s.tryAcquire("a/x", 1)).toBe(true);
  });

  test("a job handed a place stops its timer: the timeout cannot take the place back", async () => {
    const { slots: s, timers } = slots();
    s.tryAcquire("a/x", 1);
    const waiting = track(s.acquire("a/x", 1, 2000));
    s.release("a/x");
    await settle();
    expect(waiting.value).toBe(true);
    expect(timers.pending).toBe(0);
    timers.advance(5000);
    expect(s.inFlight("a/x")).toBe(1);
  });

  test("a timer that fires before the clock reached the deadline keeps the job in line for the rest", async () => {
    const clock = new ManualClock(0);
    let fire: (() => void) | null = null;
    const early: Schedule = (fn) => {
      fire = fn;
      return () => {
        fire = null;
      };
    };
    const s = new EndpointSlots({ clock, schedule: early });
    s.tryAcquire("a/x", 1);
    const waiting = track(s.acquire("a/x", 1, 2000));
    clock.advance(1500);
    fire!();
    await settle();
    expect(waiting.settled).toBe(false);
    clock.advance(500);
    fire!();
    await settle();
    expect(waiting.value).toBe(false);
  });

  test("the line holds twice the limit, or half the workers when that is more; beyond it a job is turned away at once", async () => {
    const { slots: s } = slots(0);
    s.tryAcquire("a/x", 1);
    const inLine = [track(s.acquire("a/x", 1, 2000)), track(s.acquire("a/x", 1, 2000))];
    const turnedAway = track(s.acquire("a/x", 1, 2000));
    await settle();
    expect(turnedAway).toEqual({ settled: true, value: false });
    expect(inLine.map((w) => w.settled)).toEqual([false, false]);
    expect(s.waiting("a/x")).toBe(2);

    const wide = slots(10).slots;
    wide.tryAcquire("a/x", 1);
    for (let i = 0; i < 5; i++) void wide.acquire("a/x", 1, 2000);
    const sixth = track(wide.acquire("a/x", 1, 2000));
    await settle();
    expect([wide.waiting("a/x"), sixth.value]).toEqual([5, false]);
  });

  test("a free place is taken at once without waiting in line", async () => {
    const { slots: s, timers } = slots();
    expect(await s.acquire("a/x", 2, 2000)).toBe(true);
    expect(timers.pending).toBe(0);
    expect(s.inFlight("a/x")).toBe(1);
  });
});

describe("busyRetryMs", () => {
  const top = () => 1 - Number.EPSILON;
  test("a job turned away looks again after 250 ms twice, then twice as long each time, up to 2 s", () => {
    expect([0, 1, 2, 3, 4, 5, 20].map((bounces) => busyRetryMs(bounces, top))).toEqual([
      250, 250, 500, 1000, 2000, 2000, 2000,
    ]);
    expect(BUSY_RETRY_MAX_MS).toBe(2000);
  });

  test("the wait is jittered into its upper half", () => {
    expect(busyRetryMs(3, () => 0)).toBe(500);
    expect(busyRetryMs(3, () => 0.5)).toBe(750);
  });

  test("an attempt starts the count over: the next busy run waits the shortest time again", () => {
    // The caller counts the runs that found no place since the delivery's last attempt.
    expect(busyRetryMs(6, top)).toBe(2000);
    expect(busyRetryMs(0, top)).toBe(250);
  });
});
