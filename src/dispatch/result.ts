import { PermanentJobError, RetryLaterError } from "../workers/job-runner.ts";
import type { Attempted } from "./gate.ts";

/**
 * How one run of a delivery's job ended, as the dispatcher sees it. `attempted` is what the
 * endpoint's circuit learns (null: no request left).
 */
export type AttemptResult =
  /** A 2xx answer, recorded; `acked`: the job's ack went in the same commit. */
  | { kind: "delivered"; acked: boolean; attempted: Attempted }
  /**
   * Try again later: after `delayMs` when known (a Retry-After; a busy endpoint or an open
   * circuit, where `wait` says nothing failed), else after the queue's backoff.
   */
  | { kind: "retry"; reason: string; delayMs: number | null; wait: boolean; attempted: Attempted | null }
  /**
   * Never again. `recorded`: the delivery is dead on record (its job acked with it when `acked`);
   * otherwise there is no delivery or event to work on and the job itself is dead.
   */
  | { kind: "dead"; reason: string; recorded: boolean; acked: boolean; attempted: Attempted | null }
  /** This run is over without an attempt (denied, quarantined, parked, already finished): the delivery's state says what comes next. */
  | { kind: "settled"; reason: string };

/** What the endpoint's circuit learns from a run that held a place (nothing when it threw). */
export function attemptedOf(r: AttemptResult | null): Attempted | null {
  return r && r.kind !== "settled" ? r.attempted : null;
}

/**
 * The job runner's result for a run (src/workers/job-runner.ts): resolve ("acked" when the ack
 * went in the run's last commit) or throw what makes the runner retry or dead-letter the job.
 */
export function toJobResult(r: AttemptResult): "acked" | undefined {
  switch (r.kind) {
    case "delivered":
      return r.acked ? "acked" : undefined;
    case "settled":
      return undefined;
    case "dead":
      if (!r.recorded) throw new PermanentJobError(r.reason);
      return r.acked ? "acked" : undefined;
    case "retry":
      if (r.delayMs === null) throw new Error(r.reason);
      throw new RetryLaterError(r.reason, r.delayMs, r.wait);
  }
}
