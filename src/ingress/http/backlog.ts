import type { Clock } from "../../core/clock.ts";

/** How often the queue's depth is sampled for the high-water check. */
export const BACKLOG_SAMPLE_MS = 500;

/**
 * Shedding while the job queue is behind (ingress_queue_high_water, docs/api.md): a request that
 * arrives while the backlog is at or above the high-water mark is answered 503 before anything
 * is verified or written. The depth is sampled in the background, at most once per
 * BACKLOG_SAMPLE_MS, because the check must not cost a query per request; a request sees the
 * last sample's depth (0 until the first sample has answered), and a failed sample keeps it.
 */
export class Backlog {
  private depth = 0;
  private sampledAt = Number.NEGATIVE_INFINITY;
  private sampling = false;

  constructor(
    /** The queue's backlog: jobs waiting or running, never the finished ones kept for retention. */
    private readonly sample: () => Promise<number>,
    private readonly highWater: number,
    private readonly clock: Clock,
    private readonly sampleMs: number = BACKLOG_SAMPLE_MS,
  ) {}

  /** The last sampled depth; starts a new sample when this one is older than sampleMs and none is under way. */
  current(): number {
    if (!this.sampling && this.clock.now() - this.sampledAt > this.sampleMs) {
      this.sampling = true;
      this.sample()
        .then((n) => (this.depth = n))
        .catch(() => {})
        .finally(() => {
          this.sampledAt = this.clock.now();
          this.sampling = false;
        });
    }
    return this.depth;
  }

  /** Whether to shed this request: the sampled depth is at or above the high-water mark. */
  full(): boolean {
    return this.current() >= this.highWater;
  }
}
