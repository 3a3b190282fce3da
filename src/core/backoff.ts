import type { Random } from "./clock.ts";

export interface BackoffPolicy {
  /** Delay before the first retry. */
  baseMs: number;
  /** No delay is ever longer. */
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, capMs: 60 * 60 * 1000 };

/**
 * Delay before retry number `attempt` (1 = the first retry): exponential with "equal jitter",
 * i.e. a uniformly random delay in [d/2, d) where d = min(cap, base * 2^(attempt-1)), so that
 * jobs failing together do not retry together while the delay still grows. A delay the other
 * side asked for (HTTP Retry-After) is honoured, clamped to the cap, never shortened by jitter.
 */
export function retryDelay(
  attempt: number,
  random: Random,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  askedMs?: number,
): number {
  const exp = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.floor(exp / 2 + random() * (exp / 2));
  if (askedMs !== undefined && askedMs > 0) return Math.min(policy.capMs, Math.max(askedMs, jittered));
  return jittered;
}
