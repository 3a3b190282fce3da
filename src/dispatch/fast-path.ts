import type { EndpointSpec } from "../control/resources/specs.ts";
import type { Envelope } from "../events/envelope.ts";
import type { DeliveryRow, Job, Storage } from "../store/index.ts";
import { PermanentJobError, RetryLaterError } from "../workers/job-runner.ts";
import { attempt, retryJob } from "./attempt.ts";
import { type DispatchContext, DELIVERY_JOB, deliveryJob } from "./context.ts";
import type { Place } from "./gate.ts";
import { type AttemptResult, attemptedOf, toJobResult } from "./result.ts";
import type { TaskTrace } from "./trace.ts";

/**
 * The routing fast path's attempts (docs/architecture.md#dispatch): each starts once the routing
 * commit that decided its delivery is on disk. With a job leased to this process (a shared
 * database) it ends as a job run would (acked with the outcome, failed for a retry); without one
 * (SQLite, `ctx.jobless`) the attempt's commit writes a retry's job when there is one, and a crash
 * leaves the delivery `delivering` for `recoverFastAttempts` to find. Shutdown waits for them.
 */
export class FastAttempts {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly ctx: DispatchContext) {}

  /** Attempt 1 of delivery `d`, whose audit entry is in the routing commit; `place` is held for it. */
  start(job: Job | null, d: DeliveryRow, spec: EndpointSpec, envelope: Envelope, trace: TaskTrace, place: Place): void {
    const p = this.run(job, d, spec, envelope, trace, place);
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  /** Wait up to `ms` for the attempts in flight; false when some were cut off (they are recovered at the next start). */
  async drain(ms: number): Promise<boolean> {
    if (!this.running.size) return true;
    return Promise.race([Promise.allSettled([...this.running]).then(() => true), Bun.sleep(ms).then(() => false)]);
  }

  private async run(
    job: Job | null,
    d: DeliveryRow,
    spec: EndpointSpec,
    envelope: Envelope,
    trace: TaskTrace,
    place: Place,
  ) {
    const { queue } = this.ctx.storage;
    let result: AttemptResult | null = null;
    try {
      result = await attempt(this.ctx, job, d, spec, envelope, trace, 1);
      if (!job) return;
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
      if (job) await queue.fail(job, { message: String((e as Error)?.message ?? e), retryable: true }).catch(() => {});
      else this.retryLater(d);
    } finally {
      place.release(attemptedOf(result));
    }
  }

  /**
   * A jobless attempt that could not record its outcome gets its job now; should that fail too,
   * again after the visibility timeout (what a lost lease would wait), and a crash meanwhile
   * leaves it to `recoverFastAttempts`.
   */
  private retryLater(d: DeliveryRow): void {
    this.ctx.storage.committer
      .run((tx) => tx.enqueue(retryJob(this.ctx, d, tx.now)))
      .catch(() => {
        setTimeout(() => this.retryLater(d), this.ctx.lease.visibilityMs).unref();
      });
  }
}

/**
 * At start-up on SQLite, before any worker or listener: a fast attempt the last process cut off
 * left its delivery `delivering` without a job; each gets one, due now (the attempt's audit entry
 * is committed, so the run that follows audits and makes attempt 2, as after a lost lease). Once
 * per delivery (its key): a delivery whose recovered job died is not brought back again.
 */
export async function recoverFastAttempts(storage: Storage): Promise<number> {
  if (storage.shared) return 0;
  let recovered = 0;
  let before: string | undefined;
  for (;;) {
    const page = await storage.events.deliveries({ state: "delivering", before, limit: 500 });
    if (!page.length) return recovered;
    const orphans: DeliveryRow[] = [];
    for (const d of page) if (!(await storage.queue.unfinished(DELIVERY_JOB, `delivery:${d.id}`))) orphans.push(d);
    if (orphans.length) {
      recovered += await storage.committer.run((tx) => {
        let n = 0;
        for (const d of orphans) if (tx.enqueue(deliveryJob(d, `delivery:${d.id}:recovered`)).created) n++;
        return n;
      });
    }
    before = page.at(-1)!.id;
  }
}
