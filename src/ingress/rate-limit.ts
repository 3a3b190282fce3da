import { type Clock, systemClock } from "../core/clock.ts";

/**
 * Token buckets held in memory, one per key (a client address, a tenant, a binding): each holds
 * up to `burst` tokens and refills at `perMinute`. Nothing is persisted: after a restart every
 * bucket starts full, which is the forgiving side for an appliance on its own LAN.
 *
 * Buckets that have refilled completely are forgotten (checked every PRUNE_EVERY takes), so a
 * scan from many addresses costs memory only while its buckets are not yet full again.
 */
const PRUNE_EVERY = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private takes = 0;

  constructor(
    readonly perMinute: number,
    readonly burst: number = perMinute,
    private readonly clock: Clock = systemClock,
  ) {
    this.perMs = perMinute / 60_000;
  }

  /** Take one token for `key`: true if there was one. */
  take(key: string): boolean {
    if (++this.takes % PRUNE_EVERY === 0) this.prune();
    const b = this.refilled(key);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Milliseconds until `key` has a token again (0: it has one now). */
  retryAfterMs(key: string): number {
    const b = this.refilled(key);
    return b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) / this.perMs);
  }

  get size(): number {
    return this.buckets.size;
  }

  private refilled(key: string): Bucket {
    const now = this.clock.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
      return b;
    }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
    b.at = now;
    return b;
  }

  private prune(): void {
    const now = this.clock.now();
    for (const [key, b] of this.buckets)
      if (b.tokens + (now - b.at) * this.perMs >= this.burst) this.buckets.delete(key);
  }
}
