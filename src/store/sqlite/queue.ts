import { and, eq, inArray, isNull, lte, or, type SQL, sql } from "drizzle-orm";
import { type BackoffPolicy, DEFAULT_BACKOFF, retryDelay } from "../../core/backoff.ts";
import { type Clock, type Random, systemClock } from "../../core/clock.ts";
import { parseSeqId, seqId } from "../../core/ids.ts";
import type {
  BornLease,
  EnqueueResult,
  FailOptions,
  FailOutcome,
  Job,
  JobQueue,
  JobSpec,
  JobState,
  LeaseOptions,
  LeaseRef,
} from "../contract.ts";
import { jobs } from "../schema/index.ts";
import type { Db, SqliteHandle } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";

export const DEFAULT_MAX_ATTEMPTS = 10;
/** Runs a job may have in all when they keep being cut off by the process stopping (see recoverExpired). */
export const CRASH_RUNS = 100;
const MAX_ERROR_LENGTH = 2000;

type JobRow = typeof jobs.$inferSelect;

const toJob = (r: JobRow): Job => ({
  id: seqId("job", r.id),
  kind: r.kind,
  tenant: r.tenant,
  payload: r.payload,
  idempotencyKey: r.idempotencyKey,
  state: r.state,
  attempt: r.attempt,
  maxAttempts: r.maxAttempts,
  runAt: r.runAt,
  createdAt: r.createdAt,
  expiresAt: r.expiresAt,
  leaseExpiresAt: r.leaseExpiresAt,
  lastError: r.lastError,
  deadReason: r.deadReason,
});

const p = sql.placeholder;

/**
 * The job queue on SQLite. Every write goes through the group committer, so an enqueue, a claim
 * or an ack costs a share of one fsync. The job state machine (docs/state-machines.md#jobs):
 *
 *   available --lease--> leased --ack--> done
 *       ^                  |  \--fail (attempts left, within max age)--> available (run_at later)
 *       |                  |   \-fail (no attempts left / too old / permanent)--> dead
 *       \--lease expired---/ (recoverExpired; dead when it was the last attempt)
 *
 * A lease is fenced by the attempt number: an ack or fail from a worker whose lease expired and
 * was claimed again changes nothing and reports the lease as lost.
 */
export class SqliteQueue implements JobQueue {
  private readonly listeners = new Set<() => void>();
  private readonly db: Db;
  private readonly insert;
  private readonly findByKey;
  private readonly claim;
  private readonly claims = new Map<string, ReturnType<SqliteQueue["makeClaim"]>>();
  private readonly complete;
  private readonly insertLeased;
  private readonly retry;
  private readonly bury;
  private readonly notify = (): void => {
    for (const l of this.listeners) l();
  };

  constructor(
    private readonly handle: SqliteHandle,
    private readonly committer: SqliteCommitter,
    private readonly clock: Clock = systemClock,
    private readonly random: Random = Math.random,
    private readonly backoff: BackoffPolicy = DEFAULT_BACKOFF,
  ) {
    const db = (this.db = handle.db);
    // The two hottest statements are plain bun:sqlite: drizzle's prepared statements map named
    // parameters on every call, which measured 2.5 µs of a 7 µs insert (bench/queue.ts).
    // RETURNING is avoided for the same reason (2 µs of 10): the change count says enough.
    this.insert = handle.sqlite.prepare<
      never,
      [string, string | null, string, string | null, number, number, number, number | null]
    >(
      "INSERT INTO jobs (kind, tenant, payload, idempotency_key, state, max_attempts, run_at, created_at, expires_at) " +
        "VALUES (?, ?, ?, ?, 'available', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.insertLeased = handle.sqlite.prepare<
      never,
      [string, string | null, string, string | null, number, number, number | null, number, string | null]
    >(
      "INSERT INTO jobs (kind, tenant, payload, idempotency_key, state, attempt, max_attempts, run_at, created_at, " +
        "expires_at, leased_at, lease_expires_at, lease_owner) " +
        "VALUES (?1, ?2, ?3, ?4, 'leased', 1, ?5, ?6, ?6, ?7, ?6, ?8, ?9) ON CONFLICT DO NOTHING",
    );
    this.complete = handle.sqlite.prepare<never, [number, number, number]>(
      "UPDATE jobs SET state = 'done', finished_at = ?, lease_expires_at = NULL, lease_owner = NULL " +
        "WHERE id = ? AND attempt = ? AND state = 'leased'",
    );
    this.findByKey = db
      .select({ id: jobs.id })
      .from(jobs)
      .where(and(eq(jobs.kind, p("kind")), eq(jobs.idempotencyKey, p("key"))))
      .prepare();
    this.claim = this.makeClaim();
    this.retry = db
      .update(jobs)
      .set({
        state: "available",
        runAt: sql`${p("runAt")}`,
        lastError: sql`${p("error")}`,
        leaseExpiresAt: null,
        leaseOwner: null,
      })
      .where(and(eq(jobs.id, p("id")), eq(jobs.attempt, p("attempt")), eq(jobs.state, "leased")))
      .returning({ id: jobs.id })
      .prepare();
    this.bury = db
      .update(jobs)
      .set({
        state: "dead",
        deadReason: sql`${p("reason")}`,
        lastError: sql`${p("error")}`,
        finishedAt: sql`${p("now")}`,
        leaseExpiresAt: null,
        leaseOwner: null,
      })
      .where(and(eq(jobs.id, p("id")), eq(jobs.attempt, p("attempt")), eq(jobs.state, "leased")))
      .returning({ id: jobs.id })
      .prepare();
  }

  /** The claim for a set of kinds, prepared once per set (a runner always asks for the same kinds). */
  private claimOf(kinds: readonly string[]) {
    const key = kinds.join("\n");
    let claim = this.claims.get(key);
    if (!claim) {
      claim = this.makeClaim(kinds);
      if (this.claims.size > 100) this.claims.clear();
      this.claims.set(key, claim);
    }
    return claim;
  }

  private makeClaim(kinds?: readonly string[]) {
    return this.db
      .update(jobs)
      .set({
        state: "leased",
        attempt: sql`${jobs.attempt} + 1`,
        leasedAt: sql`${p("now")}`,
        leaseExpiresAt: sql`${p("leaseExpiresAt")}`,
        leaseOwner: sql`${p("owner")}`,
      })
      .where(inArray(jobs.id, this.readyIds(kinds).limit(p("limit"))))
      .returning()
      .prepare();
  }

  /** Ready jobs, oldest first: walks the partial index jobs_ready. */
  private readyIds(kinds?: readonly string[]) {
    const ready = and(
      eq(jobs.state, "available"),
      lte(jobs.runAt, sql`${p("now")}`),
      or(isNull(jobs.expiresAt), sql`${jobs.expiresAt} > ${p("now")}`),
      kinds ? inArray(jobs.kind, [...kinds]) : undefined,
    );
    return this.db.select({ id: jobs.id }).from(jobs).where(ready).orderBy(jobs.runAt, jobs.id).$dynamic();
  }

  // ---- inside a unit of work -------------------------------------------------------------------

  enqueueTx(tx: SqliteTx, spec: JobSpec): EnqueueResult {
    const key = spec.idempotencyKey ?? null;
    const inserted = this.insert.run(
      spec.kind,
      spec.tenant ?? null,
      JSON.stringify(spec.payload ?? null),
      key,
      spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      spec.runAt ?? tx.now,
      tx.now,
      spec.maxAgeMs ? tx.now + spec.maxAgeMs : null,
    );
    if (inserted.changes === 1) {
      tx.afterCommit(this.notify);
      return { id: seqId("job", Number(inserted.lastInsertRowid)), created: true };
    }
    const existing = key === null ? undefined : this.findByKey.get({ kind: spec.kind, key });
    if (!existing) throw new Error("job insert ignored without an idempotency conflict");
    return { id: seqId("job", existing.id), created: false };
  }

  /** The leased fast path (the contract's JobQueue.enqueueLeasedTx). */
  enqueueLeasedTx(tx: SqliteTx, spec: JobSpec, lease: BornLease): Job | null {
    const key = spec.idempotencyKey ?? null;
    const maxAttempts = spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    const expiresAt = spec.maxAgeMs ? tx.now + spec.maxAgeMs : null;
    const leaseExpiresAt = tx.now + lease.visibilityMs;
    const inserted = this.insertLeased.run(
      spec.kind,
      spec.tenant ?? null,
      JSON.stringify(spec.payload ?? null),
      key,
      maxAttempts,
      tx.now,
      expiresAt,
      leaseExpiresAt,
      lease.owner,
    );
    if (inserted.changes !== 1) return null;
    return {
      id: seqId("job", Number(inserted.lastInsertRowid)),
      kind: spec.kind,
      tenant: spec.tenant ?? null,
      payload: spec.payload ?? null,
      idempotencyKey: key,
      state: "leased",
      attempt: 1,
      maxAttempts,
      runAt: tx.now,
      createdAt: tx.now,
      expiresAt,
      leaseExpiresAt,
      lastError: null,
      deadReason: null,
    };
  }

  ackTx(tx: SqliteTx, lease: LeaseRef): boolean {
    const rowid = parseSeqId("job", lease.id);
    return rowid !== null && this.complete.run(tx.now, rowid, lease.attempt).changes === 1;
  }

  // ---- the contract ----------------------------------------------------------------------------

  enqueue(spec: JobSpec): Promise<EnqueueResult> {
    return this.committer.run((tx) => this.enqueueTx(tx, spec));
  }

  lease(opts: LeaseOptions): Promise<Job[]> {
    return this.committer.run((tx) => {
      const params = {
        now: tx.now,
        leaseExpiresAt: tx.now + opts.visibilityMs,
        owner: opts.owner ?? null,
        limit: opts.limit,
      };
      const rows = opts.kinds ? this.claimOf(opts.kinds).all(params) : this.claim.all(params);
      // RETURNING does not promise an order; the oldest job should run first.
      return rows.sort((a, b) => a.runAt - b.runAt || a.id - b.id).map(toJob);
    });
  }

  ack(lease: LeaseRef): Promise<boolean> {
    return this.committer.run((tx) => this.ackTx(tx, lease));
  }

  fail(lease: LeaseRef, opts: FailOptions): Promise<FailOutcome> {
    return this.committer.run((tx): FailOutcome => {
      const rowid = parseSeqId("job", lease.id);
      const job = rowid === null ? undefined : this.db.select().from(jobs).where(eq(jobs.id, rowid)).get();
      if (!job || job.state !== "leased" || job.attempt !== lease.attempt) return { state: "lost" };
      const error = opts.message.slice(0, MAX_ERROR_LENGTH);
      const runAt =
        tx.now +
        (opts.exactDelay && opts.retryAfterMs !== undefined
          ? Math.max(0, opts.retryAfterMs)
          : retryDelay(job.attempt, this.random, this.backoff, opts.retryAfterMs));
      const reason =
        opts.retryable === false
          ? "permanent"
          : job.attempt >= job.maxAttempts
            ? "max_attempts"
            : job.expiresAt !== null && runAt >= job.expiresAt
              ? "max_age"
              : null;
      if (reason) {
        this.bury.all({ id: job.id, attempt: job.attempt, reason, error, now: tx.now });
        return { state: "dead", reason };
      }
      this.retry.all({ id: job.id, attempt: job.attempt, runAt, error });
      tx.afterCommit(this.notify);
      return { state: "retry", runAt };
    });
  }

  extend(lease: LeaseRef, visibilityMs: number): Promise<boolean> {
    return this.committer.run(
      (tx) =>
        this.db
          .update(jobs)
          .set({ leaseExpiresAt: tx.now + visibilityMs })
          .where(
            and(
              eq(jobs.id, parseSeqId("job", lease.id) ?? 0),
              eq(jobs.attempt, lease.attempt),
              eq(jobs.state, "leased"),
            ),
          )
          .returning({ id: jobs.id })
          .all().length === 1,
    );
  }

  recoverExpired(opts: { all?: boolean } = {}): Promise<number> {
    return this.committer.run((tx) => {
      const expired = opts.all
        ? sql`${jobs.state} = 'leased'`
        : sql`${jobs.state} = 'leased' AND ${jobs.leaseExpiresAt} <= ${tx.now}`;
      // At start-up (`all`) the runs were cut off by the process dying, not by the job: they do not
      // count against max_attempts (the budget grows by one), up to CRASH_RUNS runs in all, so that
      // a job that kills the process every time is still dead-lettered. A lease that expired while
      // its process lived (a hung handler) counts as a run like any other.
      if (opts.all) {
        this.db
          .update(jobs)
          .set({ maxAttempts: sql`${jobs.maxAttempts} + 1` })
          .where(and(expired, sql`${jobs.maxAttempts} < ${CRASH_RUNS}`))
          .run();
      }
      // The worker died during its last attempt: nothing is left to try.
      const dead = this.db
        .update(jobs)
        .set({
          state: "dead",
          deadReason: "max_attempts",
          lastError: opts.all
            ? `its runs were cut off by the process stopping ${CRASH_RUNS} times`
            : "lease expired on the last attempt",
          finishedAt: tx.now,
          leaseExpiresAt: null,
          leaseOwner: null,
        })
        .where(and(expired, sql`${jobs.attempt} >= ${jobs.maxAttempts}`))
        .returning({ id: jobs.id })
        .all().length;
      const back = this.db
        .update(jobs)
        .set({
          state: "available",
          runAt: tx.now,
          lastError: opts.all ? "cut off: the process stopped" : "lease expired",
          leaseExpiresAt: null,
          leaseOwner: null,
        })
        .where(expired)
        .returning({ id: jobs.id })
        .all().length;
      if (back > 0) tx.afterCommit(this.notify);
      return dead + back;
    });
  }

  sweep(retentionMs: number): Promise<{ expired: number; purged: number }> {
    return this.committer.run((tx) => {
      const expired = this.db
        .update(jobs)
        .set({ state: "dead", deadReason: "max_age", finishedAt: tx.now })
        .where(sql`${jobs.state} = 'available' AND ${jobs.expiresAt} IS NOT NULL AND ${jobs.expiresAt} <= ${tx.now}`)
        .returning({ id: jobs.id })
        .all().length;
      // Never the job with the largest id: a new job's id is the largest plus one (the table has
      // no AUTOINCREMENT, src/store/schema/queue.ts), so it stays and no id is handed out twice.
      const purged = this.db
        .delete(jobs)
        .where(
          sql`${jobs.state} IN ('done', 'dead') AND ${jobs.finishedAt} < ${tx.now - retentionMs} AND ${jobs.id} < (SELECT max(id) FROM jobs)`,
        )
        .returning({ id: jobs.id })
        .all().length;
      return { expired, purged };
    });
  }

  async get(id: string): Promise<Job | null> {
    const rowid = parseSeqId("job", id);
    const row = rowid === null ? undefined : this.db.select().from(jobs).where(eq(jobs.id, rowid)).get();
    return row ? toJob(row) : null;
  }

  /** `key = prefix OR key LIKE prefix:%`, written as a range so that the idempotency index answers it. */
  private keyed(kind: string, prefix: string): SQL {
    const range = sql`${jobs.idempotencyKey} >= ${`${prefix}:`} AND ${jobs.idempotencyKey} < ${`${prefix};`}`;
    return sql`${jobs.kind} = ${kind} AND (${jobs.idempotencyKey} = ${prefix} OR (${range}))`;
  }

  async unfinished(kind: string, keyPrefix: string): Promise<Job | null> {
    const row = this.db
      .select()
      .from(jobs)
      .where(sql`${this.keyed(kind, keyPrefix)} AND ${jobs.state} IN ('available', 'leased')`)
      .orderBy(sql`${jobs.id} DESC`)
      .limit(1)
      .get();
    return row ? toJob(row) : null;
  }

  runNow(kind: string, keyPrefixes: readonly string[]): Promise<number> {
    if (!keyPrefixes.length) return Promise.resolve(0);
    return this.committer.run((tx) => {
      let n = 0;
      for (const prefix of keyPrefixes) {
        n += this.db
          .update(jobs)
          .set({ runAt: tx.now })
          .where(sql`${this.keyed(kind, prefix)} AND ${jobs.state} = 'available' AND ${jobs.runAt} > ${tx.now}`)
          .returning({ id: jobs.id })
          .all().length;
      }
      if (n > 0) tx.afterCommit(this.notify);
      return n;
    });
  }

  async backlog(): Promise<number> {
    return this.count(sql`${jobs.state} = 'available'`);
  }

  async depth(): Promise<Record<JobState | "scheduled", number>> {
    return { ...(await this.activeDepth()), done: this.count(sql`${jobs.state} = 'done'`) };
  }

  async activeDepth(): Promise<Record<Exclude<JobState, "done"> | "scheduled", number>> {
    // One count per state, each answered from its partial index rather than a table scan.
    const available = this.count(sql`${jobs.state} = 'available'`);
    const scheduled = this.count(sql`${jobs.state} = 'available' AND ${jobs.runAt} > ${this.clock.now()}`);
    return {
      available: available - scheduled,
      scheduled,
      leased: this.count(sql`${jobs.state} = 'leased'`),
      dead: this.count(sql`${jobs.state} = 'dead'`),
    };
  }

  private count(where: SQL): number {
    return this.db.select({ n: sql<number>`count(*)` }).from(jobs).where(where).get()?.n ?? 0;
  }

  onEnqueued(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
