/** Time and randomness are injected so that retry timing and expiry are testable without sleeps. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock a test moves by hand. */
export class ManualClock implements Clock {
  constructor(private t: number = Date.UTC(2026, 10, 21, 14, 0, 0)) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Uniform random number in [0, 1). */
export type Random = () => number;
