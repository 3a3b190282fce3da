import type { Clock, Random } from "../core/clock.ts";

/**
 * Each endpoint's in-flight limit (`max_in_flight`, docs/architecture.md#dispatch): how many of
 * its deliveries are being attempted, and the line of jobs waiting for a place. In memory, with
 * time from the injected clock and timers, so the rules are tested with a manual clock; with
 * several nodes each place is also taken in the shared count (`shared`), so the limit is global.
 *
 * A freed place is handed over to the job that waited longest (the in-flight count stays with
 * it); while anyone waits, a newcomer that does not wait (the routing fast path) finds the
 * endpoint busy, so the line is served first.
 */

/** Runs `fn` after `ms`; what it returns cancels it. */
export type Schedule = (fn: () => void, ms: number) => () => void;

const realTimers: Schedule = (fn, ms) => {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
};

interface Waiter {
  deadline: number;
  take(): void;
  giveUp(): void;
}

/**
 * The places counted across nodes (Storage.slots on a shared database): a place is taken there
 * too, after this process's own count allowed it, and given back when this process has no use
 * for it any more (a place handed over in line stays taken).
 */
export interface SharedPlaces {
  take(key: string, limit: number): number | null;
  release(key: string, slot: number): void;
}

/** How often a job in line asks the shared count again: other nodes' releases do not wake it. */
const SHARED_POLL_MS = 50;

export interface EndpointSlotsOptions {
  clock: Clock;
  /** Several nodes: `max_in_flight` holds for all of them together. */
  shared?: SharedPlaces | null;
  /** The job runner's concurrency: half of it may wait in one endpoint's line when that is more than the endpoint's own share. */
  workers?: number;
  schedule?: Schedule;
}

export class EndpointSlots {
  private readonly busy = new Map<string, number>();
  /** Per endpoint, the shared places this process holds (several nodes only). */
  private readonly held = new Map<string, number[]>();
  /** Per endpoint, the jobs waiting in line for a place, oldest first. */
  private readonly lines = new Map<string, Waiter[]>();
  private readonly schedule: Schedule;

  constructor(private readonly opts: EndpointSlotsOptions) {
    this.schedule = opts.schedule ?? realTimers;
  }

  /** A place at once, if one is free and nobody waits for one; the caller must `release` it. */
  tryAcquire(key: string, limit: number): boolean {
    if (this.lines.has(key)) return false;
    return this.takeFree(key, limit);
  }

  /** A free place by this process's count and, with several nodes, by the shared one. */
  private takeFree(key: string, limit: number): boolean {
    const busy = this.busy.get(key) ?? 0;
    if (busy >= limit) return false;
    const shared = this.opts.shared;
    if (shared) {
      const slot = shared.take(key, limit);
      if (slot === null) return false;
      const held = this.held.get(key) ?? [];
      held.push(slot);
      this.held.set(key, held);
    }
    this.busy.set(key, busy + 1);
    return true;
  }

  /**
   * A place at once when one is free, else in line for up to `waitMs`, taking over the place the
   * next release frees. A line holds twice the endpoint's limit, or half the job workers when that
   * is more: a burst to one endpoint keeps it as busy as it allows, while the workers beyond its
   * line are given back at once (false) and half of them always serve other endpoints.
   */
  acquire(key: string, limit: number, waitMs: number): Promise<boolean> {
    if (this.tryAcquire(key, limit)) return Promise.resolve(true);
    const line = this.lines.get(key) ?? [];
    if (line.length >= Math.max(2 * limit, Math.floor((this.opts.workers ?? 0) / 2))) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      let cancel = () => {};
      const waiter: Waiter = {
        deadline: this.opts.clock.now() + waitMs,
        take: () => {
          cancel();
          resolve(true);
        },
        giveUp: () => {
          this.leaveLine(key, waiter);
          resolve(false);
        },
      };
      // A timer that fires before the clock reached the deadline waits for the rest. With several
      // nodes, a place another node frees is seen only by asking: the first in line asks often.
      const poll = this.opts.shared ? SHARED_POLL_MS : Number.POSITIVE_INFINITY;
      const check = () => {
        const left = waiter.deadline - this.opts.clock.now();
        if (this.opts.shared && this.lines.get(key)?.[0] === waiter && this.tryShared(key, limit)) {
          this.leaveLine(key, waiter);
          return waiter.take();
        }
        if (left > 0) cancel = this.schedule(check, Math.min(left, poll));
        else waiter.giveUp();
      };
      cancel = this.schedule(check, Math.min(waitMs, poll));
      line.push(waiter);
      this.lines.set(key, line);
    });
  }

  /** A timer's ask: the database being away is "not yet", not an error thrown into a timer. */
  private tryShared(key: string, limit: number): boolean {
    try {
      return this.takeFree(key, limit);
    } catch {
      return false;
    }
  }

  /** A place is free again: it goes to the job that waited longest, else it is free. */
  release(key: string): void {
    const line = this.lines.get(key);
    const next = line?.shift();
    if (line && line.length === 0) this.lines.delete(key);
    if (next) return next.take();
    const slot = this.held.get(key)?.pop();
    if (slot !== undefined) {
      if (this.held.get(key)!.length === 0) this.held.delete(key);
      this.opts.shared!.release(key, slot);
    }
    const left = (this.busy.get(key) ?? 1) - 1;
    if (left > 0) this.busy.set(key, left);
    else this.busy.delete(key);
  }

  /** Deliveries being attempted at `key` (including places just handed over). */
  inFlight(key: string): number {
    return this.busy.get(key) ?? 0;
  }

  /** Jobs waiting in `key`'s line. */
  waiting(key: string): number {
    return this.lines.get(key)?.length ?? 0;
  }

  private leaveLine(key: string, waiter: Waiter): void {
    const line = this.lines.get(key);
    const i = line?.indexOf(waiter) ?? -1;
    if (i >= 0) line!.splice(i, 1);
    if (line && line.length === 0) this.lines.delete(key);
  }
}

/** How soon a delivery that found its endpoint busy looks again. */
const BUSY_RETRY_MS = 250;
/** A delivery that keeps finding its endpoint busy (a hung endpoint, a long backlog) looks again less often, up to this. */
export const BUSY_RETRY_MAX_MS = 2_000;

/**
 * When a job that found no place at its endpoint comes again, after `bounces` earlier runs that
 * found none since its last attempt: 250 ms twice, then twice as long each time up to 2 s,
 * jittered into its upper half, so a long backlog at a slow endpoint does not churn the queue
 * four times a second per delivery. An attempt starts the count over.
 */
export function busyRetryMs(bounces: number, random: Random): number {
  const wait = Math.min(BUSY_RETRY_MAX_MS, BUSY_RETRY_MS * 2 ** Math.min(3, Math.max(0, bounces - 1)));
  return Math.round(wait / 2 + (random() * wait) / 2);
}
