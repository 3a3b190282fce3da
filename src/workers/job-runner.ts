import type { BornLease, Job, JobQueue } from "../store/index.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";

/** What a handler gets besides the job: a signal that fires when the runner must stop now. */
export interface JobContext {
  signal: AbortSignal;
  log: Logger;
  /**
   * What the job's creator handed along in memory when the job was born leased to this runner
   * (`JobRunner.reserve`), such as the bytes it just wrote: the handler need not read them back.
   * Never set for a claimed job (a retry, a recovered lease, another node's job).
   */
  local?: unknown;
}

/**
 * A handler resolves when its job is done; the runner then acks it. A handler that acked the job
 * itself, inside the transaction that committed its work (`tx.ack(job)`: one commit instead of
 * two, and no window where the work is done but the job still looks pending), says "acked".
 */
export type JobHandler = (job: Job, ctx: JobContext) => Promise<void | "acked">;

/** Thrown by a handler whose job can never succeed: dead-letter it without retrying. */
export class PermanentJobError extends Error {
  override readonly name = "PermanentJobError";
}

/**
 * Thrown by a handler that was told when to retry (e.g. HTTP 429 with Retry-After: no sooner than
 * the backoff either), or that waits for something local (`wait`: a busy endpoint, an open
 * circuit): then exactly after `retryAfterMs`, no backoff, since nothing failed.
 */
export class RetryLaterError extends Error {
  override readonly name = "RetryLaterError";
  constructor(
    message: string,
    readonly retryAfterMs: number,
    readonly wait = false,
  ) {
    super(message);
  }
}

export interface JobRunnerOptions {
  queue: JobQueue;
  handlers: ReadonlyMap<string, JobHandler>;
  log: Logger;
  concurrency: number;
  visibilityMs: number;
  /** How often to look for work when nothing wakes the runner (scheduled retries). */
  pollMs?: number;
  owner?: string;
  onOutcome?: (kind: string, outcome: "done" | "retry" | "dead" | "lost", seconds: number) => void;
  /** The clock the queue schedules retries by (their `runAt`), and the heartbeat's. */
  clock?: Clock;
}

/**
 * A place in a runner for a job born leased to it (`JobQueue.enqueueLeasedTx`), reserved before
 * the commit that creates the job, so the job starts once that commits: no claim, no wait.
 * Exactly one of `start` and `release` is called.
 */
export interface BornSlot {
  /** The lease to create the job with. */
  readonly lease: BornLease;
  /** The commit is in: run the job, with what its creator hands along in memory. */
  start(job: Job, local?: unknown): void;
  /** The job was not created (a failed commit, a taken idempotency key): the place is free again. */
  release(): void;
}

/**
 * Leases jobs of the kinds it has handlers for, in batches, runs up to `concurrency` at once,
 * and acks or fails each. Wakes on every committed enqueue, at the retries it schedules itself
 * when they are due sooner than the next poll, and otherwise polls, so scheduled retries start
 * on time. `stop()` stops leasing and waits for the jobs in flight.
 */
export class JobRunner {
  private running = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** Places reserved for born-leased jobs whose commit is on its way: they count as running. */
  private reserved = 0;
  private wake: (() => void) | null = null;
  private woken = false;
  /**
   * Whether a lease may find jobs. A job that finishes frees a place, but most jobs are born
   * leased to a free place (reserve()): leasing again after every one of them was a claim
   * statement and a commit unit per message that found nothing. Set by an enqueue, the poll and
   * a lease that filled every place it asked for; cleared when a lease is made.
   */
  private mayHaveWork = true;
  private loop: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private unsubscribe: (() => void) | null = null;
  /** A wake-up at the earliest retry this runner scheduled (when sooner than the next poll). */
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retryAt = Number.POSITIVE_INFINITY;
  /** Last time the loop went round: /readyz treats a stale heartbeat as a dead worker. */
  heartbeat: number;
  private readonly clock: Clock;

  constructor(private readonly opts: JobRunnerOptions) {
    this.clock = opts.clock ?? systemClock;
    this.heartbeat = this.clock.now();
  }

  get kinds(): string[] {
    return [...this.opts.handlers.keys()];
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.unsubscribe = this.opts.queue.onEnqueued(() => this.poke());
    this.loop = this.run();
  }

  /**
   * A place for a job of `kind` born leased to this runner, when one is free (running jobs and
   * other reservations leave room under `concurrency`); null otherwise, and then the creator
   * enqueues the job for any worker to claim. A job started after `stop()` began is not run: it
   * keeps its lease and runs again after the next start, like a job cut off (at least once).
   */
  reserve(kind: string): BornSlot | null {
    if (!this.running || !this.opts.handlers.has(kind)) return null;
    if (this.inFlight.size + this.reserved >= this.opts.concurrency) return null;
    this.reserved++;
    let open = true;
    const close = (): boolean => {
      if (!open) return false;
      open = false;
      this.reserved--;
      return true;
    };
    return {
      lease: { owner: this.opts.owner ?? null, visibilityMs: this.opts.visibilityMs },
      start: (job, local) => {
        if (!close()) return;
        if (this.running) this.track(this.execute(job, local));
      },
      release: () => {
        if (close()) this.wake?.();
      },
    };
  }

  private poke(): void {
    this.mayHaveWork = true;
    this.woken = true;
    this.wake?.();
  }

  /**
   * Look for work again at `at` (a retry this runner just scheduled, such as a delivery whose
   * endpoint was busy for a moment), when that is sooner than the poll interval would.
   */
  private wakeAt(at: number): void {
    const pollMs = this.opts.pollMs ?? 1000;
    const inMs = Math.max(0, at - this.clock.now());
    if (!this.running || inMs >= pollMs || at >= this.retryAt) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryAt = at;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryAt = Number.POSITIVE_INFINITY;
      this.poke();
    }, inMs);
  }

  private async run(): Promise<void> {
    const pollMs = this.opts.pollMs ?? 1000;
    const kinds = this.kinds;
    while (this.running) {
      this.heartbeat = this.clock.now();
      const room = this.opts.concurrency - this.inFlight.size - this.reserved;
      let leased: Job[] = [];
      if (room > 0 && kinds.length > 0 && this.mayHaveWork) {
        this.woken = false;
        // Cleared before the lease: an enqueue that commits meanwhile pokes, and sets it again.
        this.mayHaveWork = false;
        try {
          leased = await this.opts.queue.lease({
            kinds,
            limit: room,
            visibilityMs: this.opts.visibilityMs,
            owner: this.opts.owner,
          });
          // A full lease may have left more behind.
          if (leased.length >= room) this.mayHaveWork = true;
        } catch (e) {
          this.mayHaveWork = true;
          this.opts.log.error("job lease failed", { err: e });
        }
        for (const job of leased) this.track(this.execute(job));
      }
      if (!this.running) break;
      // Full, or nothing to do: wait for a slot, an enqueue, or the poll interval.
      if (leased.length === 0 || this.inFlight.size + this.reserved >= this.opts.concurrency) {
        if (this.woken && this.inFlight.size + this.reserved < this.opts.concurrency) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            // Work this node is not told of: retries come due, leases expire, a peer without NOTIFY.
            this.mayHaveWork = true;
            resolve();
          }, pollMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
    }
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => {
      this.inFlight.delete(p);
      this.wake?.();
    });
  }

  private async execute(job: Job, local?: unknown): Promise<void> {
    const handler = this.opts.handlers.get(job.kind)!;
    const log = this.opts.log.child({ job: job.id, kind: job.kind, attempt: job.attempt });
    const started = performance.now();
    let outcome: "done" | "retry" | "dead" | "lost";
    try {
      const result = await handler(job, { signal: this.abort.signal, log, local });
      outcome = result === "acked" || (await this.opts.queue.ack(job)) ? "done" : "lost";
    } catch (e) {
      const err = e as Error;
      try {
        const result = await this.opts.queue.fail(job, {
          message: `${err?.name ?? "Error"}: ${err?.message ?? String(e)}`,
          retryable: !(e instanceof PermanentJobError),
          retryAfterMs: e instanceof RetryLaterError ? e.retryAfterMs : undefined,
          exactDelay: e instanceof RetryLaterError && e.wait,
        });
        outcome = result.state;
        if (result.state === "retry") this.wakeAt(result.runAt);
        log[outcome === "dead" ? "warn" : "info"]("job failed", { err, outcome });
      } catch (failErr) {
        // The lease will expire and the job will be recovered: at least once, never lost.
        log.error("recording a job failure failed", { err: failErr });
        outcome = "lost";
      }
    }
    if (outcome === "lost") log.warn("job lease was lost before it finished");
    this.opts.onOutcome?.(job.kind, outcome, (performance.now() - started) / 1000);
  }

  /** Stop leasing; wait up to `deadlineMs` for jobs in flight, then abort them. Returns how many were cut off. */
  async stop(deadlineMs: number): Promise<number> {
    this.running = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.unsubscribe?.();
    this.wake?.();
    await this.loop;
    const all = Promise.allSettled([...this.inFlight]);
    const timedOut = await Promise.race([all.then(() => false), Bun.sleep(deadlineMs).then(() => true)]);
    if (!timedOut) return 0;
    const left = this.inFlight.size;
    this.abort.abort(new Error("shutting down"));
    return left;
  }
}
