import { type Clock, systemClock } from "./clock.ts";
import { Counter, Gauge, Histogram, Registry } from "./prom.ts";

/**
 * The appliance's Prometheus metrics. prom-client's default Node.js collectors are not used:
 * under Bun several of them report nonsense (event-loop lag, heap spaces), so process memory is
 * read from process.memoryUsage() on each scrape instead.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly commits = new Counter({
    name: "agentowl_commits_total",
    help: "Group-commit transactions, by outcome.",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly commitBatchSize = new Histogram({
    name: "agentowl_commit_batch_size",
    help: "Units of work per group-commit transaction.",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [this.registry],
  });
  readonly commitSeconds = new Histogram({
    name: "agentowl_commit_duration_seconds",
    help: "Time to run and durably commit one group-commit transaction.",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: "agentowl_jobs_total",
    help: "Jobs the runner finished, by kind and outcome (done, retry, dead, lost).",
    labelNames: ["kind", "outcome"] as const,
    registers: [this.registry],
  });
  readonly jobSeconds = new Histogram({
    name: "agentowl_job_duration_seconds",
    help: "Time from a job's start to its ack or failure, by kind.",
    labelNames: ["kind"] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: "agentowl_http_requests_total",
    help: "HTTP requests answered, by method, route and status.",
    labelNames: ["method", "route", "status"] as const,
    registers: [this.registry],
  });
  readonly outboxEvents = new Counter({
    name: "agentowl_outbox_events_total",
    help: "Outbox entries committed, by topic.",
    labelNames: ["topic"] as const,
    registers: [this.registry],
  });

  /**
   * The SMTP pipeline (docs/architecture.md#the-smtp-pipeline), one series per stage: connect, tls, mail, rcpt, data, spool,
   * commit (in the session) and parse, auth, normalize (in the processing job). Outcomes are
   * the stage's own words: ok, refused, rate_limited, too_big, unavailable, error, …
   */
  readonly smtpStages = new Counter({
    name: "agentowl_smtp_stage_total",
    help: "SMTP pipeline stage outcomes, by stage and outcome.",
    labelNames: ["stage", "outcome"] as const,
    registers: [this.registry],
  });
  readonly smtpStageSeconds = new Histogram({
    name: "agentowl_smtp_stage_duration_seconds",
    help: "Time spent in each SMTP pipeline stage.",
    labelNames: ["stage"] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly smtpConnections = new Gauge({
    name: "agentowl_smtp_connections",
    help: "SMTP connections open now.",
    registers: [this.registry],
  });

  /** HTTP ingress (docs/api.md): every attempt, accepted or refused, by channel and outcome. */
  readonly ingressRequests = new Counter({
    name: "agentowl_ingress_requests_total",
    help: "Webhook and Telnyx requests, by channel (webhook, telnyx) and outcome (accepted, duplicate, or the refusal).",
    labelNames: ["channel", "outcome"] as const,
    registers: [this.registry],
  });
  readonly ingressSeconds = new Histogram({
    name: "agentowl_ingress_duration_seconds",
    help: "Time from a webhook's arrival to its answer, by channel.",
    labelNames: ["channel"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  /**
   * How late the event loop ran a timer that asked to run every 25 ms (src/core/loop-lag.ts):
   * the time the loop spent on something else. guarantee 9 (docs/guarantees.md)'s target is no stall over 250 ms.
   */
  readonly loopStall = new Histogram({
    name: "agentowl_event_loop_stall_seconds",
    help: "How late the event loop ran the stall monitor's 25 ms timer (time spent blocked), per tick.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private loopStallMaxMs = 0;

  constructor(clock: Clock = systemClock) {
    const self = this;
    new Gauge({
      name: "agentowl_event_loop_stall_max_seconds",
      help: "The longest event-loop stall since the process started.",
      registers: [this.registry],
      collect() {
        this.set(self.loopStallMaxMs / 1000);
      },
    });
    new Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident set size of the process.",
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage().rss);
      },
    });
    new Gauge({
      name: "agentowl_heap_used_bytes",
      help: "JavaScript heap in use.",
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage().heapUsed);
      },
    });
    new Gauge({
      name: "process_start_time_seconds",
      help: "Start time of the process since the Unix epoch, in seconds.",
      registers: [this.registry],
    }).set(Math.floor((clock.now() - performance.now()) / 1000));
  }

  /** Observe one group commit (wired to the committer's onCommit). */
  observeCommit = (units: number, seconds: number, ok: boolean): void => {
    this.commits.inc({ outcome: ok ? "ok" : "failed" });
    if (!ok) return;
    this.commitBatchSize.observe(units);
    this.commitSeconds.observe(seconds);
  };

  /** Observe one tick of the stall monitor (its lateness in ms). */
  observeLoopLag = (ms: number): void => {
    this.loopStall.observe(ms / 1000);
    if (ms > this.loopStallMaxMs) this.loopStallMaxMs = ms;
  };

  /** Report the queue's depth by state on every scrape (all but `done`). */
  watchQueue(queue: { activeDepth(): Promise<Record<string, number>> }): void {
    new Gauge({
      name: "agentowl_queue_jobs",
      help:
        "Jobs in the queue by state (available = ready now, scheduled = waiting for a retry time, " +
        "leased = running, dead = dead-lettered). Finished jobs are agentowl_jobs_total.",
      labelNames: ["state"] as const,
      registers: [this.registry],
      // Not `done`: counting the finished jobs the retention keeps would stall the event loop in
      // proportion to them (16-30 ms at 100,000) on every scrape.
      async collect() {
        for (const [state, n] of Object.entries(await queue.activeDepth())) this.set({ state }, n);
      },
    });
  }

  /** Circuit breakers that are not closed (docs/state-machines.md: the console shows them; so does /metrics). */
  watchCircuits(troubled: () => [string, { state: string; consecutiveFailures: number }][]): void {
    new Gauge({
      name: "agentowl_endpoint_circuit_open",
      help: "Endpoints whose circuit breaker is not closed: 1 open, 0.5 half-open (a probe may go); closed ones are absent.",
      labelNames: ["endpoint"] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [endpoint, v] of troubled()) this.set({ endpoint }, v.state === "open" ? 1 : 0.5);
      },
    });
  }

  /** The data dir's free space on every scrape, beside the threshold under which it warns. */
  watchDisk(sample: () => { free: number; total: number; warnAt: number; failAt: number }): void {
    const gauge = (name: string, help: string, pick: (s: ReturnType<typeof sample>) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          try {
            this.set(pick(sample()));
          } catch {
            // statfs failed: the gauge keeps its last value; /readyz says why
          }
        },
      });
    gauge("agentowl_disk_free_bytes", "Free space on the data dir's filesystem (statfs f_bavail).", (s) => s.free);
    gauge("agentowl_disk_size_bytes", "Size of the data dir's filesystem.", (s) => s.total);
    gauge("agentowl_disk_warn_free_bytes", "disk_warn_free in bytes: below it the log warns.", (s) => s.warnAt);
    gauge("agentowl_disk_fail_free_bytes", "disk_fail_free in bytes: below it /readyz fails.", (s) => s.failAt);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
