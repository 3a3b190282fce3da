import type { Clock } from "../core/clock.ts";

/**
 * What every step of the stop stack is told at shutdown: the deadline (`shutdown_timeout` from
 * the stop), and where it records what it had to cut off at that deadline.
 */
export class Shutdown {
  readonly deadline: number;
  /** Requests, sessions or deliveries were cut off at the deadline. */
  forced = false;
  /** Jobs still running at the deadline: aborted, they keep their leases for the next start. */
  jobsCutOff = 0;

  constructor(
    private readonly clock: Clock,
    timeoutMs: number,
  ) {
    this.deadline = clock.now() + timeoutMs;
  }

  /** Milliseconds until the deadline (0 once it has passed). */
  left(): number {
    return Math.max(0, this.deadline - this.clock.now());
  }
}
