/**
 * The storage contract: what the ingresses, the dispatcher and the workers may ask of storage.
 * SQLite implements it now (src/store/sqlite/); a PostgreSQL driver (docs/architecture.md) implements the
 * same interfaces and must pass the same conformance suite (test/store-contract.ts).
 */
import type { AuditEntry, Broken, ChainedEntry, ChainKeys } from "./audit-chain.ts";
import type { Checkpoint } from "./audit-checkpoints.ts";

export interface JobSpec {
  kind: string;
  payload: unknown;
  tenant?: string | null;
  /** Unique per kind: a second enqueue with the same key returns the first job's id. */
  idempotencyKey?: string | null;
  /** Not before this time (ms since epoch); now by default. */
  runAt?: number;
  /** Attempts before the job is dead-lettered (default 10). */
  maxAttempts?: number;
  /** The job is dead-lettered once it is older than this (default: no limit). */
  maxAgeMs?: number | null;
}

export interface EnqueueResult {
  id: string;
  /** False when the idempotency key matched an existing job. */
  created: boolean;
}

export type JobState = "available" | "leased" | "done" | "dead";
export type DeadReason = "max_attempts" | "max_age" | "permanent";

export interface Job {
  id: string;
  kind: string;
  tenant: string | null;
  payload: unknown;
  idempotencyKey: string | null;
  state: JobState;
  /** Attempts started so far; the lease's fencing token. */
  attempt: number;
  maxAttempts: number;
  runAt: number;
  createdAt: number;
  expiresAt: number | null;
  leaseExpiresAt: number | null;
  lastError: string | null;
  deadReason: DeadReason | null;
}

/** Identifies one lease of one job: acks and fails of a lease that was lost are refused. */
export type LeaseRef = Pick<Job, "id" | "attempt">;

export interface LeaseOptions {
  /** Only these kinds (default: any). */
  kinds?: readonly string[];
  limit: number;
  visibilityMs: number;
  owner?: string;
}

export interface FailOptions {
  message: string;
  /** False: no retry, dead-letter now. */
  retryable?: boolean;
  /** The failing side asked for this delay (e.g. HTTP Retry-After); clamped to the backoff cap. */
  retryAfterMs?: number;
  /** `retryAfterMs` is the whole delay, no backoff: the job waited for something local (a busy endpoint), it did not fail. */
  exactDelay?: boolean;
}

export type FailOutcome = { state: "retry"; runAt: number } | { state: "dead"; reason: DeadReason } | { state: "lost" };

export interface OutboxEvent {
  topic: string;
  tenant?: string | null;
  payload: unknown;
}

export interface OutboxEntry {
  seq: number;
  id: string;
  topic: string;
  tenant: string | null;
  payload: unknown;
  createdAt: number;
}

/**
 * What a unit of work may do inside one group-committed transaction. Everything it does commits
 * together or not at all; `afterCommit` callbacks run only once the commit is durable.
 */
export interface UnitOfWork {
  /** The batch's clock reading: every write in one transaction shares it. */
  readonly now: number;
  enqueue(spec: JobSpec): EnqueueResult;
  ack(lease: LeaseRef): boolean;
  emit(event: OutboxEvent): string;
  afterCommit(fn: () => void): void;
}

export interface CommitterStats {
  commits: number;
  units: number;
  failedCommits: number;
  /** Histogram of units per commit: bucket upper bound → commits. */
  batchSizes: Map<number, number>;
}

export interface Committer<Tx extends UnitOfWork = UnitOfWork> {
  /**
   * Run `work` inside the next group commit. Resolves with its result once the transaction is
   * durable; rejects if `work` throws (its writes are rolled back, the rest of the batch is not)
   * or if the commit fails (then nothing of the batch was written).
   */
  run<T>(work: (tx: Tx) => T): Promise<T>;
  stats(): CommitterStats;
  /** Commit what is pending and refuse new work. */
  close(): Promise<void>;
}

export interface JobQueue {
  enqueue(spec: JobSpec): Promise<EnqueueResult>;
  /** Claim up to `limit` ready jobs, oldest first, each for `visibilityMs`. */
  lease(opts: LeaseOptions): Promise<Job[]>;
  ack(lease: LeaseRef): Promise<boolean>;
  fail(lease: LeaseRef, opts: FailOptions): Promise<FailOutcome>;
  /** Push the visibility timeout of a running job further out. */
  extend(lease: LeaseRef, visibilityMs: number): Promise<boolean>;
  /**
   * Return the jobs of dead workers (lease expired) to the queue, or dead-letter them. With
   * `all`, every leased job counts as expired: for a process that knows no other worker is alive
   * (the appliance at start-up, holding the data dir's lock); those runs were cut off by the
   * process stopping, so they do not count against max_attempts (each gives its run back), up to
   * 100 runs in all: a job that kills the process every time is still dead-lettered.
   */
  recoverExpired(opts?: { all?: boolean }): Promise<number>;
  /** Dead-letter waiting jobs past their max age; purge finished jobs older than `retentionMs`. */
  sweep(retentionMs: number): Promise<{ expired: number; purged: number }>;
  get(id: string): Promise<Job | null>;
  /** Jobs by state. Counting `done` reads every finished job the retention window keeps. */
  depth(): Promise<Record<JobState | "scheduled", number>>;
  /**
   * Jobs by state but `done`: the ones waiting, running or dead-lettered, each counted from its
   * own index, so the cost follows them and not the finished jobs kept for the retention window.
   */
  activeDepth(): Promise<Record<Exclude<JobState, "done"> | "scheduled", number>>;
  /**
   * Jobs waiting to run, now or scheduled for later: what a high-water mark checks. Its cost
   * follows the backlog, not the finished jobs the retention window keeps.
   */
  backlog(): Promise<number>;
  /**
   * The unfinished (waiting or running) job of `kind` whose idempotency key is `keyPrefix` or
   * starts with `keyPrefix:`; the newest when several are. Answered from the idempotency index:
   * what a delivery's job is waiting for, shown beside it.
   */
  unfinished(kind: string, keyPrefix: string): Promise<Job | null>;
  /**
   * Waiting jobs of `kind` keyed by one of `keyPrefixes` (as in `unfinished`) that are scheduled
   * for later become due now; returns how many. For a wait whose reason went away (an
   * endpoint's circuit reset, its URL fixed).
   */
  runNow(kind: string, keyPrefixes: readonly string[]): Promise<number>;
  /** Called after a commit that made jobs available. */
  onEnqueued(listener: () => void): () => void;
}

export interface Outbox {
  emit(event: OutboxEvent): Promise<string>;
  /** Entries after `position`, in commit order. */
  read(afterSeq: number, limit: number): Promise<OutboxEntry[]>;
  /**
   * Entries after `position` whose topic is one of `topics` (exact names), in commit order, and
   * the position a subscriber to those topics has thereby passed: the last entry read when the
   * limit was reached, else the head of the log as it was when the read began.
   */
  readTopics(
    afterSeq: number,
    limit: number,
    topics: readonly string[],
  ): Promise<{ entries: OutboxEntry[]; upTo: number }>;
  cursor(subscriber: string): Promise<number>;
  advance(subscriber: string, seq: number): Promise<void>;
  /** Delete entries every subscriber has passed and that are older than `retentionMs`. */
  purge(retentionMs: number): Promise<number>;
  /** Drop a retired subscriber's cursor, so that it no longer holds back the purge. */
  forget(subscriber: string): Promise<void>;
  /** Called after each commit that emitted, once per topic it emitted (null: some topic, wake anyway). */
  onEmitted(listener: (topic: string | null) => void): () => void;
  /** Called with the topic of every entry once its transaction has committed. */
  onCommitted(counter: (topic: string) => void): () => void;
}

/** A control-plane resource's address. Tenants are kind "tenants" with tenant = their name. */
export interface ResourceKey {
  tenant: string;
  kind: string;
  name: string;
}

export interface ResourceRecord extends ResourceKey {
  spec: unknown;
  resourceVersion: number;
  createdAt: number;
  updatedAt: number;
}

/** create: must not exist (409); update: must exist (404); upsert: either. */
export type WriteMode = "create" | "update" | "upsert";

/** HTTP preconditions, parsed: If-Match with resource versions or "*", If-None-Match: *. */
export interface Precondition {
  ifMatch?: number[] | "*";
  ifNoneMatch?: boolean;
}

export interface ResourceStore {
  get(key: ResourceKey): Promise<ResourceRecord | null>;
  /** One kind, ordered by name, after the cursor `after`. */
  list(q: {
    tenant?: string;
    tenants?: readonly string[];
    kind: string;
    after?: string;
    limit: number;
  }): Promise<ResourceRecord[]>;
  all(): Promise<ResourceRecord[]>;
  history(
    key: ResourceKey,
  ): Promise<{ resourceVersion: number; op: string; spec: unknown; actor: string; changedAt: number }[]>;
}

export interface TokenRecord {
  id: string;
  name: string;
  scopes: string[];
  createdAt: number;
  createdBy: string;
  expiresAt: number | null;
  revokedAt: number | null;
}

export interface TokenStore {
  /** Store a new token's hash; the caller shows the token once. */
  create(t: {
    name: string;
    hash: string;
    scopes: string[];
    expiresAt: number | null;
    createdBy: string;
  }): Promise<TokenRecord>;
  findByHash(hash: string): Promise<TokenRecord | null>;
  /** A token's record by its id (`tok_…`): what the audit log names a token's actions by. */
  get(id: string): Promise<TokenRecord | null>;
  list(q: { after?: string; limit: number }): Promise<TokenRecord[]>;
  /** Revoke (idempotent); the revocation is audited as `actor`'s. */
  revoke(id: string, actor: string): Promise<TokenRecord | null>;
  /** Tokens with the admin scope that are neither revoked nor expired. */
  countActiveAdmins(now: number): Promise<number>;
}

// The audit log (guarantee 6 (docs/guarantees.md), §3.10)

export type NewAuditEntry = Omit<AuditEntry, "seq" | "at" | "tenant" | "target" | "decision" | "details"> &
  Partial<Pick<AuditEntry, "tenant" | "target" | "decision" | "details">>;

/** A head the operator kept elsewhere (a log line, a ticket): `<hash>` or `<seq>:<hash>`. */
export interface ExpectedHead {
  seq: number | null;
  hash: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Entries that verified, up to the first broken one. */
  entries: number;
  /** The hash of the last entry that verified (GENESIS when none did). */
  head: string;
  /** The first entry that is wrong (changed, out of place, or missing). */
  firstBroken: Broken | null;
  /** The last entry before it that verified, when there is one. */
  lastGood: { seq: number; hash: string } | null;
  /** Whether the chain is checked with the audit key (false: a tool without the vault). */
  keyed: boolean;
  /** The latest signed checkpoint the log was checked against. */
  checkpoint: { seq: number; head: string; at: number } | null;
  /** Entries missing at the end of the log against the checkpoint (or the expected head). */
  missing: number;
  expectHead: (ExpectedHead & { found: boolean }) | null;
  /** What is wrong, in one sentence, when not ok. */
  problem: string | null;
}

export interface AnchorOptions {
  keys: ChainKeys;
  /** The checkpoint file, `<data dir>/audit/checkpoints.jsonl`. */
  file: string;
  /** Write a checkpoint once this many entries have been committed since the last one... */
  everyEntries: number;
  /** ...and every this many milliseconds when the log grew, and at close. */
  everyMs: number;
  /** Told of every checkpoint written: the appliance logs it, so a copy lives outside the data dir. */
  onCheckpoint?: (cp: Checkpoint) => void;
  /** A checkpoint could not be written (the disk is full): the next one covers its entries. */
  onError?: (e: unknown) => void;
}

/** What anchoring found: how the checkpoint file and the table stood when the appliance started. */
export type AnchorState =
  | { kind: "continued"; checkpoint: Checkpoint; problem: string | null }
  | { kind: "new" }
  | { kind: "upgraded"; legacyThrough: number; head: string }
  | { kind: "restarted"; problem: string };

/** The hash-chained, append-only audit log, keyed and anchored to signed checkpoints. */
export interface AuditLog {
  append(e: NewAuditEntry): Promise<ChainedEntry>;
  /** Key the chain and anchor it to its checkpoint file, before the first append. */
  anchor(opts: AnchorOptions): AnchorState;
  /** Checkpoint the committed head now, if the log grew; the latest checkpoint. */
  checkpoint(): Promise<Checkpoint | null>;
  /** At shutdown, after the last commit: a final checkpoint. */
  closeAnchor(): Promise<void>;
  verify(opts?: { expectHead?: ExpectedHead }): Promise<VerifyReport>;
}

export interface Storage {
  readonly driver: "sqlite" | "postgres";
  readonly committer: Committer;
  readonly queue: JobQueue;
  readonly outbox: Outbox;
  readonly audit: AuditLog;
  /** A durable write through the committer, for readiness checks. */
  probeWrite(): Promise<void>;
  close(): Promise<void>;
}
