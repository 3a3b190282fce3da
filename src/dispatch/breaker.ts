/**
 * A circuit breaker per endpoint (docs/state-machines.md): after `threshold` consecutive failed
 * attempts the endpoint is `open` and deliveries to it wait instead of trying; after `cooldownMs`
 * it is `half_open` and exactly one attempt (the probe) may go; its success closes the circuit,
 * its failure opens it again for another cooldown. Held in memory: after a restart every circuit
 * starts closed, and the first failures open it again quickly.
 */

import { type Clock, systemClock } from "../core/clock.ts";

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerOptions {
  threshold: number;
  cooldownMs: number;
  clock?: Clock;
}

export interface BreakerView {
  state: BreakerState;
  consecutiveFailures: number;
  /** When an open circuit lets a probe through (ms), else null. */
  retryAt: number | null;
}

export class CircuitBreaker {
  private failures = 0;
  private openedAt: number | null = null;
  private probing = false;
  private readonly clock: Clock;

  constructor(private readonly opts: BreakerOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  get state(): BreakerState {
    if (this.openedAt === null) return "closed";
    return this.clock.now() - this.openedAt >= this.opts.cooldownMs ? "half_open" : "open";
  }

  /**
   * May an attempt go now? Closed: yes. Open: no, until the cooldown is over. Half-open: one
   * probe; others wait for its outcome. A caller that gets true must report the outcome.
   */
  tryAcquire(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    if (state === "open" || this.probing) return false;
    this.probing = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.openedAt = null;
    this.probing = false;
  }

  /** An acquired attempt that did not happen (or whose failure was not the endpoint's): the probe slot is free again. */
  release(): void {
    this.probing = false;
  }

  failure(): void {
    this.failures++;
    const probeFailed = this.probing;
    this.probing = false;
    if (probeFailed || this.failures >= this.opts.threshold) this.openedAt = this.clock.now();
  }

  view(): BreakerView {
    const state = this.state;
    return {
      state,
      consecutiveFailures: this.failures,
      retryAt: this.openedAt === null ? null : this.openedAt + this.opts.cooldownMs,
    };
  }
}

/**
 * One breaker per key (tenant/endpoint), created on first use. A breaker belongs to the URL it
 * was tripped on: when the endpoint's URL changes, its failures say nothing about the new one,
 * so the circuit starts closed again (a wrong URL fixed must not wait out the cooldown).
 */
export class Breakers {
  private readonly byKey = new Map<string, { breaker: CircuitBreaker; url: string | undefined }>();

  constructor(private readonly opts: BreakerOptions) {}

  for(key: string, url?: string): CircuitBreaker {
    const held = this.byKey.get(key);
    if (held && (url === undefined || held.url === url)) return held.breaker;
    const breaker = new CircuitBreaker(this.opts);
    this.byKey.set(key, { breaker, url: url ?? held?.url });
    return breaker;
  }

  /** Forget a circuit (an operator's reset, or its endpoint changed): the next attempt finds it closed. Whether one was open. */
  reset(key: string): boolean {
    const held = this.byKey.get(key);
    this.byKey.delete(key);
    return held !== undefined && held.breaker.state !== "closed";
  }

  /** The state of one endpoint's circuit, closed when it has never been used. */
  peek(key: string): BreakerView {
    return this.byKey.get(key)?.breaker.view() ?? { state: "closed", consecutiveFailures: 0, retryAt: null };
  }

  /** Every breaker that is not closed, for /metrics and the API. */
  troubled(): [string, BreakerView][] {
    return [...this.byKey]
      .map(([k, b]) => [k, b.breaker.view()] as [string, BreakerView])
      .filter(([, v]) => v.state !== "closed");
  }
}
