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
import type { PgCommitter, PgTx } from "./committer.ts";
import { num, numOrNull, type PgDb } from "./db.ts";

export const DEFAULT_MAX_ATTEMPTS = 10;
/** Runs a job may have in all when they keep being cut off by the process stopping (see recoverExpired). */
export const CRASH_RUNS = 100;
const MAX_ERROR_LENGTH = 2000;
/** The channel every node LISTENs on: a commit that made jobs available NOTIFYs it. */
export const JOBS_CHANNEL = "agentowl_jobs";
/** Job ids reserved from the sequence at a time, so that an enqueue without an idempotency key needs no round trip. */
const ID_BLOCK = 256;

const COLUMNS =
  "id, kind, tenant, payload, idempotency_key, state, attempt, max_attempts, run_at, created_at, expires_at, " +
  "lease_expires_at, last_error, dead_reason";

type Row = Record<string, unknown>;

/** Integers as a PostgreSQL array literal (`{1,2,3}`), for a `$n::bigint[]` parameter. */
const intArray = (xs: number[]): string => `{${xs.join(",")}}`;

/**
 * The claim: $1 now, $2 the lease's expiry, $3 its owner, $4 the limit, $5 the kinds when `byKind`.
 * Run on PgDb.claims, whose planner walks jobs_ready in order (see there).
 */
export function claimStatement(byKind: boolean): string {
  return (
    "UPDATE jobs SET state = 'leased', attempt = attempt + 1, leased_at = $1, lease_expires_at = $2, lease_owner = $3 " +
    "WHERE id IN (SELECT id FROM jobs WHERE state = 'available' AND run_at <= $1 " +
    `AND (expires_at IS NULL OR expires_at > $1)${byKind ? " AND kind = ANY($5::text[])" : ""} ` +
    `ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING ${COLUMNS}`
  );
}

/** The acks of one turn: $1 now, $2 the job ids, $3 their attempts. */
const ACK_ALL =
  "UPDATE jobs SET state = 'done', finished_at = $1, lease_expires_at = NULL, lease_owner = NULL " +
  "FROM unnest($2::bigint[], $3::bigint[]) AS a(id, attempt) " +
  "WHERE jobs.id = a.id AND jobs.attempt = a.attempt AND jobs.state = 'leased' RETURNING jobs.id";

const toJob = (r: Row): Job => ({
  id: seqId("job", num(r.id)),
  kind: r.kind as string,
  tenant: (r.tenant as string | null) ?? null,
  payload: r.payload ?? null,
  idempotencyKey: (r.idempotency_key as string | null) ?? null,
  state: r.state as JobState,
  attempt: num(r.attempt),
  maxAttempts: num(r.max_attempts),
  runAt: num(r.run_at),
  createdAt: num(r.created_at),
  expiresAt: numOrNull(r.expires_at),
  leaseExpiresAt: numOrNull(r.lease_expires_at),
  lastError: (r.last_error as string | null) ?? null,
  deadReason: (r.dead_reason as Job["deadReason"]) ?? null,
});

/**
 * The job queue on PostgreSQL: the state machine of src/store/sqlite/queue.ts
 * (docs/state-machines.md#jobs), written as the PostgreSQL queues that scale do it. A claim is one
 * `UPDATE … WHERE id IN (SELECT … ORDER BY run_at, id LIMIT n FOR UPDATE SKIP LOCKED) RETURNING`,
 * so nodes claiming together never wait for each other nor get the same job. An enqueue without an
 * idempotency key takes its id from a block reserved from the sequence and is deferred: a group
 * commit's inserts travel together in one round trip. A commit that made jobs available wakes this
 * node's runner directly and the other nodes by NOTIFY (they LISTEN; their 1 s poll is the fallback).
 * A lease that expired is given back by whichever node runs recoverExpired first.
 */
export class PgQueue implements JobQueue {
  private readonly listeners = new Set<() => void>();
  private ids: number[] = [];
  private readonly notify = (): void => {
    for (const l of this.listeners) l();
  };

  constructor(
    private readonly db: PgDb,
    private readonly committer: PgCommitter,
    private readonly clock: Clock = systemClock,
    private readonly random: Random = Math.random,
    private readonly backoff: BackoffPolicy = DEFAULT_BACKOFF,
  ) {}

  /** The other nodes learn of new jobs when the transaction commits (NOTIFY is transactional). */
  private announce(tx: PgTx): void {
    tx.afterCommit(this.notify);
    if (tx.once(JOBS_CHANNEL)) tx.conn.defer("SELECT pg_notify($1, $2)", [JOBS_CHANNEL, this.db.node]);
  }

  private nextId(tx: PgTx): number {
    if (this.ids.length === 0) {
      const rows = tx.conn.query<{ id: string }>(
        "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) AS id FROM generate_series(1, $1)",
        [ID_BLOCK],
      );
      this.ids = rows.map((r) => num(r.id)).reverse();
    }
    return this.ids.pop()!;
  }

  // ---- inside a unit of work -------------------------------------------------------------------

  enqueueTx(tx: PgTx, spec: JobSpec): EnqueueResult {
    const key = spec.idempotencyKey ?? null;
    const values = [
      spec.kind,
      spec.tenant ?? null,
      JSON.stringify(spec.payload ?? null),
      key,
      spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      spec.runAt ?? tx.now,
      tx.now,
      spec.maxAgeMs ? tx.now + spec.maxAgeMs : null,
    ];
    if (key === null) {
      const id = this.nextId(tx);
      tx.conn.defer(
        "INSERT INTO jobs (id, kind, tenant, payload, idempotency_key, state, max_attempts, run_at, created_at, expires_at) " +
          "VALUES ($9, $1, $2, $3::text::jsonb, $4, 'available', $5, $6, $7, $8)",
        [...values, id],
      );
      this.announce(tx);
      return { id: seqId("job", id), created: true };
    }
    const inserted = tx.conn.query<{ id: string }>(
      "INSERT INTO jobs (id, kind, tenant, payload, idempotency_key, state, max_attempts, run_at, created_at, expires_at) " +
        "VALUES ($9, $1, $2, $3::text::jsonb, $4, 'available', $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
      [...values, this.nextId(tx)],
    );
    if (inserted[0]) {
      this.announce(tx);
      return { id: seqId("job", num(inserted[0].id)), created: true };
    }
    const existing = tx.conn.query<{ id: string }>("SELECT id FROM jobs WHERE kind = $1 AND idempotency_key = $2", [
      spec.kind,
      key,
    ]);
    if (!existing[0]) throw new Error("job insert ignored without an idempotency conflict");
    return { id: seqId("job", num(existing[0].id)), created: false };
  }

  enqueueLeasedTx(tx: PgTx, spec: JobSpec, lease: BornLease): Job | null {
    const key = spec.idempotencyKey ?? null;
    const maxAttempts = spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    const expiresAt = spec.maxAgeMs ? tx.now + spec.maxAgeMs : null;
    const leaseExpiresAt = tx.now + lease.visibilityMs;
    const rows = tx.conn.query<{ id: string }>(
      "INSERT INTO jobs (id, kind, tenant, payload, idempotency_key, state, attempt, max_attempts, run_at, created_at, " +
        "expires_at, leased_at, lease_expires_at, lease_owner) " +
        "VALUES ($10, $1, $2, $3::text::jsonb, $4, 'leased', 1, $5, $6, $6, $7, $6, $8, $9) ON CONFLICT DO NOTHING RETURNING id",
      [
        spec.kind,
        spec.tenant ?? null,
        JSON.stringify(spec.payload ?? null),
        key,
        maxAttempts,
        tx.now,
        expiresAt,
        leaseExpiresAt,
        lease.owner,
        this.nextId(tx),
      ],
    );
    if (!rows[0]) return null;
    return {
      id: seqId("job", num(rows[0].id)),
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

  ackTx(tx: PgTx, lease: LeaseRef): boolean {
    const id = parseSeqId("job", lease.id);
    if (id === null) return false;
    return (
      tx.conn.query(
        "UPDATE jobs SET state = 'done', finished_at = $1, lease_expires_at = NULL, lease_owner = NULL " +
          "WHERE id = $2 AND attempt = $3 AND state = 'leased' RETURNING id",
        [tx.now, id, lease.attempt],
      ).length === 1
    );
  }

  // ---- the contract ----------------------------------------------------------------------------

  enqueue(spec: JobSpec): Promise<EnqueueResult> {
    return this.committer.run((tx) => this.enqueueTx(tx, spec));
  }

  /**
   * A claim outside a unit is one autocommit statement on PgDb.claims: no transaction around it,
   * and the event loop is not held while PostgreSQL runs it (a unit's statements wait for their
   * answer on the committer's connection; ./bridge.ts).
   */
  async lease(opts: LeaseOptions): Promise<Job[]> {
    const now = this.clock.now();
    const params: unknown[] = [now, now + opts.visibilityMs, opts.owner ?? null, opts.limit];
    if (opts.kinds) params.push([...opts.kinds]);
    const rows = (await this.db.claims.unsafe(claimStatement(opts.kinds !== undefined), params)) as Row[];
    // RETURNING does not promise an order; the oldest job should run first (compared as numbers
    // before the rows become jobs: a claim sorts hundreds).
    const keyed = Array.from(rows, (r) => ({ runAt: num(r.run_at), id: num(r.id), r }));
    keyed.sort((a, b) => a.runAt - b.runAt || a.id - b.id);
    return keyed.map((k) => toJob(k.r));
  }

  /**
   * Acks outside a unit that arrive in the same turn (a worker finishing a leased batch) share one
   * `UPDATE … FROM unnest(…)`, an autocommit statement on the pool: a round trip each would cost
   * more than the commit, and none of it needs a unit.
   */
  ack(lease: LeaseRef): Promise<boolean> {
    const id = parseSeqId("job", lease.id);
    if (id === null) return Promise.resolve(false);
    return new Promise((resolve, reject) => {
      if (!this.acks) {
        this.acks = [];
        queueMicrotask(() => this.flushAcks());
      }
      this.acks.push({ id, attempt: lease.attempt, resolve, reject });
    });
  }

  private acks: { id: number; attempt: number; resolve: (ok: boolean) => void; reject: (e: unknown) => void }[] | null =
    null;

  private flushAcks(): void {
    const batch = this.acks ?? [];
    this.acks = null;
    this.db
      // The arrays as PostgreSQL's literals: integers need no quoting, and the client's own
      // encoding of a JavaScript array costs more than the statement's planning.
      .read<{ id: unknown }>(ACK_ALL, [
        this.clock.now(),
        intArray(batch.map((a) => a.id)),
        intArray(batch.map((a) => a.attempt)),
      ])
      .then(
        (rows) => {
          const done = new Set(rows.map((r) => num(r.id)));
          for (const a of batch) a.resolve(done.has(a.id));
        },
        (e) => {
          for (const a of batch) a.reject(e);
        },
      );
  }

  fail(lease: LeaseRef, opts: FailOptions): Promise<FailOutcome> {
    return this.committer.run((tx): FailOutcome => {
      const id = parseSeqId("job", lease.id);
      const job =
        id === null
          ? undefined
          : tx.conn.query(`SELECT ${COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE`, [id]).map(toJob)[0];
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
        tx.conn.defer(
          "UPDATE jobs SET state = 'dead', dead_reason = $3, last_error = $4, finished_at = $5, lease_expires_at = NULL, " +
            "lease_owner = NULL WHERE id = $1 AND attempt = $2",
          [id, job.attempt, reason, error, tx.now],
        );
        return { state: "dead", reason };
      }
      tx.conn.defer(
        "UPDATE jobs SET state = 'available', run_at = $3, last_error = $4, lease_expires_at = NULL, lease_owner = NULL " +
          "WHERE id = $1 AND attempt = $2",
        [id, job.attempt, runAt, error],
      );
      this.announce(tx);
      return { state: "retry", runAt };
    });
  }

  extend(lease: LeaseRef, visibilityMs: number): Promise<boolean> {
    return this.committer.run(
      (tx) =>
        tx.conn.query(
          "UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND attempt = $3 AND state = 'leased' RETURNING id",
          [tx.now + visibilityMs, parseSeqId("job", lease.id) ?? 0, lease.attempt],
        ).length === 1,
    );
  }

  recoverExpired(opts: { all?: boolean } = {}): Promise<number> {
    return this.committer.run((tx) => {
      // Any node may run this: SKIP LOCKED leaves a job another node is finishing right now alone.
      const expired = opts.all ? "state = 'leased'" : "state = 'leased' AND lease_expires_at <= $1";
      if (opts.all) {
        tx.conn.defer(`UPDATE jobs SET max_attempts = max_attempts + 1 WHERE ${expired} AND max_attempts < $2`, [
          tx.now,
          CRASH_RUNS,
        ]);
      }
      const dead = tx.conn.query(
        "UPDATE jobs SET state = 'dead', dead_reason = 'max_attempts', last_error = $2, finished_at = $1, " +
          `lease_expires_at = NULL, lease_owner = NULL WHERE ${expired} AND attempt >= max_attempts RETURNING id`,
        [
          tx.now,
          opts.all
            ? `its runs were cut off by the process stopping ${CRASH_RUNS} times`
            : "lease expired on the last attempt",
        ],
      ).length;
      const back = tx.conn.query(
        "UPDATE jobs SET state = 'available', run_at = $1, last_error = $2, lease_expires_at = NULL, lease_owner = NULL " +
          `WHERE ${expired} RETURNING id`,
        [tx.now, opts.all ? "cut off: the process stopped" : "lease expired"],
      ).length;
      if (back > 0) this.announce(tx);
      return dead + back;
    });
  }

  sweep(retentionMs: number): Promise<{ expired: number; purged: number }> {
    return this.committer.run((tx) => {
      const expired = tx.conn.query(
        "UPDATE jobs SET state = 'dead', dead_reason = 'max_age', finished_at = $1 " +
          "WHERE state = 'available' AND expires_at IS NOT NULL AND expires_at <= $1 RETURNING id",
        [tx.now],
      ).length;
      const purged = tx.conn.query(
        "DELETE FROM jobs WHERE state IN ('done', 'dead') AND finished_at < $1 RETURNING id",
        [tx.now - retentionMs],
      ).length;
      return { expired, purged };
    });
  }

  async get(id: string): Promise<Job | null> {
    const rowid = parseSeqId("job", id);
    if (rowid === null) return null;
    const [row] = await this.db.read(`SELECT ${COLUMNS} FROM jobs WHERE id = $1`, [rowid]);
    return row ? toJob(row) : null;
  }

  /** `key = prefix OR key LIKE prefix:%`, written as a range so that the idempotency index answers it. */
  private static readonly KEYED =
    "kind = $1 AND (idempotency_key = $2 OR (idempotency_key >= $2 || ':' AND idempotency_key < $2 || ';'))";

  async unfinished(kind: string, keyPrefix: string): Promise<Job | null> {
    const [row] = await this.db.read(
      `SELECT ${COLUMNS} FROM jobs WHERE ${PgQueue.KEYED} AND state IN ('available', 'leased') ORDER BY id DESC LIMIT 1`,
      [kind, keyPrefix],
    );
    return row ? toJob(row) : null;
  }

  runNow(kind: string, keyPrefixes: readonly string[]): Promise<number> {
    if (!keyPrefixes.length) return Promise.resolve(0);
    return this.committer.run((tx) => {
      let n = 0;
      for (const prefix of keyPrefixes) {
        n += tx.conn.query(
          `UPDATE jobs SET run_at = $3 WHERE ${PgQueue.KEYED} AND state = 'available' AND run_at > $3 RETURNING id`,
          [kind, prefix, tx.now],
        ).length;
      }
      if (n > 0) this.announce(tx);
      return n;
    });
  }

  async backlog(): Promise<number> {
    return this.count("state = 'available'");
  }

  async depth(): Promise<Record<JobState | "scheduled", number>> {
    return { ...(await this.activeDepth()), done: await this.count("state = 'done'") };
  }

  async activeDepth(): Promise<Record<Exclude<JobState, "done"> | "scheduled", number>> {
    const [r] = await this.db.read<Record<string, string>>(
      "SELECT count(*) FILTER (WHERE state = 'available') AS available, " +
        "count(*) FILTER (WHERE state = 'available' AND run_at > $1) AS scheduled, " +
        "count(*) FILTER (WHERE state = 'leased') AS leased, count(*) FILTER (WHERE state = 'dead') AS dead " +
        "FROM jobs WHERE state <> 'done'",
      [this.clock.now()],
    );
    const scheduled = num(r!.scheduled);
    return { available: num(r!.available) - scheduled, scheduled, leased: num(r!.leased), dead: num(r!.dead) };
  }

  private async count(where: string): Promise<number> {
    const [r] = await this.db.read<{ n: string }>(`SELECT count(*) AS n FROM jobs WHERE ${where}`);
    return num(r?.n ?? 0);
  }

  /** Wake this node's listeners when another node's commit made jobs available. */
  async listen(): Promise<{ unlisten(): Promise<void> }> {
    return this.db.pool.listen(JOBS_CHANNEL, (from) => {
      if (from !== this.db.node) this.notify();
    });
  }

  onEnqueued(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
