import type { EndpointSpec } from "../control/resources/specs.ts";
import type { Envelope } from "../events/envelope.ts";
import type { DeliveryRow, Job } from "../store/index.ts";
import { PermanentJobError, RetryLaterError } from "../workers/job-runner.ts";
import { attempt } from "./attempt.ts";
import type { DispatchContext } from "./context.ts";
import type { Place } from "./gate.ts";
import { type AttemptResult, attemptedOf, toJobResult } from "./result.ts";
import type { TaskTrace } from "./trace.ts";

/**
 * The routing fast path's attempts (docs/architecture.md#dispatch): each starts once the routing
 * commit that decided its delivery is on disk, under a job leased to this process, and ends as a
 * job run would (acked with the outcome, failed for a retry). Shutdown waits for them.
 */
export class FastAttempts {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly ctx: DispatchContext) {}

  /** Attempt 1 of delivery `d`, whose audit entry is in the routing commit; `place` is held for it. */
  start(job: Job, d: DeliveryRow, spec: EndpointSpec, envelope: Envelope, trace: TaskTrace, place: Place): void {
    const p = this.run(job, d, spec, envelope, trace, place);
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  /** Wait up to `ms` for the attempts in flight; false when some were cut off (their jobs keep their leases). */
  async drain(ms: number): Promise<boolean> {
    if (!this.running.size) return true;
    return Promise.race([Promise.allSettled([...this.running]).then(() => true), Bun.sleep(ms).then(() => false)]);
  }

  private async run(job: Job, d: DeliveryRow, spec: EndpointSpec, envelope: Envelope, trace: TaskTrace, place: Place) {
    const { queue } = this.ctx.storage;
    let result: AttemptResult | null = null;
    try {
      result = await attempt(this.ctx, job, d, spec, envelope, trace, 1);
      try {
        toJobResult(result);
      } catch (e) {
        // What the job runner does with the same result.
        const err = e as Error;
        await queue.fail(job, {
          message: `${err.name}: ${err.message}`,
          retryable: !(e instanceof PermanentJobError),
          retryAfterMs: e instanceof RetryLaterError ? e.retryAfterMs : undefined,
          exactDelay: e instanceof RetryLaterError && e.wait,
        });
      }
    } catch (e) {
      // Nothing went out (no secret, a storage error): the queue tries again later.
      await queue.fail(job, { message: String((e as Error)?.message ?? e), retryable: true }).catch(() => {});
    } finally {
      place.release(attemptedOf(result));
    }
  }
}
