import type { ManualClock } from "../core/clock.ts";
import { nextCron, parseCron } from "../core/cron.ts";

/** When a periodic task runs next, given the time now (both in ms since the epoch). */
export type Schedule = (now: number) => number;

/** `ms` after the previous run finished. */
export const every =
  (ms: number): Schedule =>
  (now) =>
    now + ms;

/** Every hour at `minute` past, local time (cron `M * * * *`). */
export const hourlyAt =
  (minute: number): Schedule =>
  (now) => {
    const d = new Date(now);
    d.setMinutes(minute, 0, 0);
    if (d.getTime() <= now) d.setHours(d.getHours() + 1, minute, 0, 0);
    return d.getTime();
  };

/** Every day at `hour:minute`, local time (cron `M H * * *`). */
export const dailyAt =
  (hour: number, minute: number): Schedule =>
  (now) => {
    const d = new Date(now);
    d.setHours(hour, minute, 0, 0);
    if (d.getTime() <= now) {
      d.setDate(d.getDate() + 1);
      // Across a daylight-saving change the day is not 24 h: name the hour again.
      d.setHours(hour, minute, 0, 0);
    }
    return d.getTime();
  };

/** One-shot timers: `after` calls `fn` once, `ms` from now, unless the returned cancel runs first. */
export interface Timers {
  after(ms: number, fn: () => void): () => void;
}

export const systemTimers: Timers = {
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** Timers on a ManualClock: `advance` moves the clock and fires each timer due on the way, at its time. */
export class ManualTimers implements Timers {
  private pending: { at: number; fn: () => void }[] = [];

  constructor(readonly clock: ManualClock) {}

  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.clock.now() + Math.max(0, ms), fn };
    this.pending.push(timer);
    return () => {
      this.pending = this.pending.filter((t) => t !== timer);
    };
  }

  /** Timers set and not yet fired or cancelled. */
  get size(): number {
    return this.pending.length;
  }

  advance(ms: number): void {
    const end = this.clock.now() + ms;
    for (;;) {
      const next = this.pending.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.pending = this.pending.filter((t) => t !== next);
      this.clock.advance(Math.max(0, next.at - this.clock.now()));
      next.fn();
    }
    this.clock.advance(end - this.clock.now());
  }
}

/** The times five-field cron text names (src/core/cron.ts); text that names none runs yearly. */
export const cronSchedule = (text: string): Schedule => {
  const c = parseCron(text);
  if (!c) throw new Error(`not a cron schedule: ${text}`);
  return (now) => nextCron(c, now) ?? now + 366 * 86_400_000;
};
