/**
 * The storage contract: everything the rest of the appliance may ask of storage, and the only way
 * it asks. SQLite implements it (src/store/sqlite/); a second driver is a new folder beside it that
 * implements these interfaces and passes the same conformance suite (test/store-contract.ts).
 * docs/architecture.md#storage says why units of work are synchronous and the rest is not.
 */
import type { Clock, Random } from "../core/clock.ts";
import type { Envelope, Span } from "../events/envelope.ts";
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
  /**
   * An announcement others may follow (a delivery's move, docs/state-machines.md): written to the
   * log only while a subscriber follows its topic (`Outbox.follow`), counted (`onCommitted`)
   * either way. `emit` then returns "" for an entry it did not write.
   */
  ifFollowed?: boolean;
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
 * `beforeCommit` callbacks run once every unit of the batch has run and the COMMIT (with its
 * fsync) is about to be written: work started there overlaps the commit. The commit may still
 * fail, or fail because of one unit and run the batch again (units and their callbacks too), so
 * such work must be what the caller undoes when it did not commit as it was started.
 */
export interface UnitOfWork {
  /** The batch's clock reading: every write in one transaction shares it. */
  readonly now: number;
  enqueue(spec: JobSpec): EnqueueResult;
  ack(lease: LeaseRef): boolean;
  emit(event: OutboxEvent): string;
  afterCommit(fn: () => void): void;
  beforeCommit(fn: () => void): void;
}

/**
 * The unit of work callers hold: opaque, it carries no database handle. Store methods that take
 * part in a unit take it as their first parameter (`insertDeliveryTx(tx, …)`); a driver extends it
 * with its own connection or transaction, which only the driver's folder sees. Units are
 * synchronous: a group commit runs many callers' units in one transaction, and a unit that
 * awaited would hold that transaction open across the event loop.
 */
export interface Tx extends UnitOfWork {}

export interface CommitterStats {
  commits: number;
  units: number;
  failedCommits: number;
  /** Histogram of units per commit: bucket upper bound → commits. */
  batchSizes: Map<number, number>;
}

/** How a unit of work may be batched (`Committer.run`). */
export interface CommitOptions {
  /**
   * How long this unit may wait for others before its commit starts, in ms. Without it, the
   * unit commits at the end of this event-loop turn (or after `commit_window`). A unit that may
   * wait goes with whatever commit starts sooner: a unit that cannot wait takes it along.
   */
  waitMs?: number;
}

export interface Committer<Tx extends UnitOfWork = UnitOfWork> {
  /**
   * Run `work` inside the next group commit. Resolves with its result once the transaction is
   * durable; rejects if `work` throws (its writes are rolled back, the rest of the batch is not)
   * or if the commit fails (then nothing of the batch was written).
   */
  run<T>(work: (tx: Tx) => T, opts?: CommitOptions): Promise<T>;
  stats(): CommitterStats;
  /** Commit what is pending and refuse new work. */
  close(): Promise<void>;
}

/** The lease a job is born with on the fast path (`enqueueLeasedTx`). */
export interface BornLease {
  /** The worker that starts on it at once. */
  owner: string | null;
  visibilityMs: number;
}

export interface JobQueue {
  /** Inside a unit of work: what `tx.enqueue` does. */
  enqueueTx(tx: Tx, spec: JobSpec): EnqueueResult;
  /** Inside a unit of work: what `tx.ack` does. */
  ackTx(tx: Tx, lease: LeaseRef): boolean;
  /**
   * The leased fast path: a job born leased to its creator, which starts on it at once after the
   * commit (no claim, no wait for a worker). Otherwise an ordinary leased job (attempt 1): acked
   * or failed under its lease, recovered like any other when its worker dies. Null when its
   * idempotency key was taken.
   */
  enqueueLeasedTx(tx: Tx, spec: JobSpec, lease: BornLease): Job | null;
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
  /** Called with the topic (and tenant) of every entry once its transaction has committed. */
  onCommitted(counter: (topic: string, tenant: string | null) => void): () => void;
  /**
   * A subscriber's topics (exact, or a prefix ending in `.*`; null: all), declared by every
   * process that may relay to it, whether or not it relays now: announcements of those topics
   * are written from then on. Undone by the function returned.
   */
  follow(topics: readonly string[] | null): () => void;
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
  /**
   * Create, update or upsert inside a unit of work, checking `mode` and the preconditions against
   * the transaction's view (AppError conflict / not_found / precondition_failed). An unchanged spec
   * writes nothing (`changed: false`); a re-created resource continues the deleted one's versions.
   */
  putTx(
    tx: Tx,
    key: ResourceKey,
    spec: unknown,
    opts: { mode: WriteMode; pre?: Precondition; actor: string },
  ): { record: ResourceRecord; changed: boolean; created: boolean };
  /** Delete inside a unit of work (a tenant only once it holds nothing); the deleted record. */
  deleteTx(tx: Tx, key: ResourceKey, opts: { pre?: Precondition; actor: string }): ResourceRecord;
  /** Every resource, read inside a unit of work (the control plane validates whole states). */
  allTx(tx: Tx): ResourceRecord[];
  /** Run several writes as one unit of work (apply). */
  transact<T>(work: (tx: Tx) => T): Promise<T>;
  /** Moves after every committed change: a reader that keeps resources in memory checks it. */
  readonly generation: number;
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

// Console users and their sessions (docs/console.md#users-and-sign-in). Hashing, lockout policy
// and auditing are the users service's (src/users/); the store keeps the rows.

export type UserRole = "admin" | "member";

export interface UserRecord {
  /** `usr_…` */
  id: string;
  /** Lower-case, 1–64 characters of [a-z0-9._-]; unique. */
  username: string;
  /** The argon2id hash (PHC string); never the password. */
  passwordHash: string;
  role: UserRole;
  tenants: string[];
  createdAt: number;
  updatedAt: number;
  /** Consecutive failed sign-ins since the last success. */
  failedCount: number;
  /** Sign-ins are refused until then (ms since the epoch); null: not locked. */
  lockedUntil: number | null;
  /** How many locks in a row (the back-off's exponent); reset by a success. */
  lockLevel: number;
}

export interface NewUser {
  username: string;
  passwordHash: string;
  role: UserRole;
  tenants: string[];
}

export type UserPatch = Partial<
  Pick<UserRecord, "passwordHash" | "role" | "tenants" | "failedCount" | "lockedUntil" | "lockLevel">
>;

export interface UserStore {
  /** A new user, created and updated at the unit's time; a taken username is AppError conflict. */
  createTx(tx: Tx, u: NewUser): UserRecord;
  getTx(tx: Tx, username: string): UserRecord | null;
  get(username: string): Promise<UserRecord | null>;
  getById(id: string): Promise<UserRecord | null>;
  /** By username, after `after` (the keyset cursor). */
  list(q: { after?: string; limit: number }): Promise<UserRecord[]>;
  countTx(tx: Tx): number;
  count(): Promise<number>;
  /** Change the given fields (and `updatedAt`); null when there is no such user. */
  updateTx(tx: Tx, username: string, patch: UserPatch): UserRecord | null;
  /** Delete the user and every session of theirs; what was deleted, or null. */
  deleteTx(tx: Tx, username: string): UserRecord | null;
}

export interface SessionRecord {
  /** The SHA-256 (hex) of the cookie's token: the token itself is never stored. */
  id: string;
  userId: string;
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  /** The absolute end (ms since the epoch), whatever the activity. */
  expiresAt: number;
  revokedAt: number | null;
}

export interface SessionStore {
  /** A new session, created and last seen at the unit's time. */
  createTx(tx: Tx, s: { id: string; userId: string; csrf: string; expiresAt: number }): SessionRecord;
  /** The session whatever its state (revoked and expired ones too, until purged); the caller decides. */
  get(id: string): Promise<SessionRecord | null>;
  /** Record activity; false when there is no such session. */
  touch(id: string, at: number): Promise<boolean>;
  /** Revoke (idempotent: the first revocation's time stays); null when there is no such session. */
  revokeTx(tx: Tx, id: string): SessionRecord | null;
  /** Revoke every live session of a user; how many were live. */
  revokeAllOfUserTx(tx: Tx, userId: string): number;
  /**
   * Delete the sessions that can no longer be used: revoked, past their absolute end at `now`, or
   * last seen at or before `idleBefore`. How many were deleted.
   */
  purge(now: number, idleBefore: number): Promise<number>;
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

export interface AuditQuery {
  tenants?: readonly string[];
  action?: string;
  actor?: string;
  /** Entries about one event: its id is their target or their details' `event`. */
  event?: string;
  since?: number;
  until?: number;
  /** Newest first, before this seq (the cursor). */
  before?: number;
  limit: number;
}

/** The hash-chained, append-only audit log, keyed and anchored to signed checkpoints. */
export interface AuditLog {
  /** An entry inside the caller's unit of work: the change and its entry commit together, or neither. */
  appendTx(tx: Tx, e: NewAuditEntry): ChainedEntry;
  /** An entry committed on its own (before an external effect it records). */
  append(e: NewAuditEntry): Promise<ChainedEntry>;
  /** Newest first. */
  list(q: AuditQuery): Promise<ChainedEntry[]>;
  /** Key the chain and anchor it to its checkpoint file, before the first append. */
  anchor(opts: AnchorOptions): AnchorState;
  /** Checkpoint the committed head now, if the log grew; the latest checkpoint. */
  checkpoint(): Promise<Checkpoint | null>;
  /** At shutdown, after the last commit: a final checkpoint. */
  closeAnchor(): Promise<void>;
  verify(opts?: { expectHead?: ExpectedHead }): Promise<VerifyReport>;
  /**
   * Retention (docs/operations.md#retention): remove the entries at the start of the log that are
   * all older than their tenant's cutoff, never the newest, under a signed checkpoint of the
   * pruned prefix so that the rest still verifies. Optional: a driver without it keeps everything.
   */
  prune?(cutoffFor: (tenant: string | null) => number): Promise<{ entries: number; through: number }>;
}

// Events, deliveries and attempts (docs/architecture.md, docs/state-machines.md)

export interface EventQuery {
  /** Only these tenants (a tenant token's view); all when omitted. */
  tenants?: readonly string[];
  type?: string;
  channel?: string;
  since?: number;
  until?: number;
  /** Newest first, before this id (the cursor). */
  before?: string;
  /** Oldest first, after this id (following new events). */
  after?: string;
  /** By what became of the event's deliveries (EVENT_STATES). */
  state?: EventState;
  /**
   * A substring (ASCII letters in any case) of the subject or the sender: a mail's `data.subject`
   * and `data.from`'s address or name, an SMS's or a call's `data.from`. At most 100 characters.
   */
  search?: string;
  limit: number;
}

/**
 * An event's state, from its deliveries (replays included; docs/console.md#events):
 * `delivered`: one was delivered and none is still waiting, in flight, failing or dead;
 * `failing`: one is retrying; `dead`: one gave up; `awaiting_approval`: one waits for a decision;
 * `none`: it has no delivery (unrouted, or not routed yet). An event may be in several.
 */
export const EVENT_STATES = ["delivered", "failing", "dead", "awaiting_approval", "none"] as const;
export type EventState = (typeof EVENT_STATES)[number];

/** The longest `search` an event query takes. */
export const EVENT_SEARCH_MAX = 100;

/** One page of events (`EventStore.page`). */
export interface EventPage {
  /** Newest first, at most the query's `limit`. */
  events: StoredEvent[];
  /** The cursor (`before`) of the next page; null when no older event is left to examine. */
  next: string | null;
  /**
   * Fewer than `limit` events because the page examined its `scan` events: older matches may
   * exist, and `next` continues from the oldest event examined.
   */
  partial: boolean;
}

export interface StoredEvent {
  envelope: Envelope;
  trace: Span[];
}

/** States of a delivery (docs/state-machines.md). */
export const DELIVERY_STATES = [
  "pending",
  "awaiting_approval",
  "delivering",
  "delivered",
  "retrying",
  "dead",
  "denied",
  "quarantined",
  "discarded",
] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** One delivery of one event to one endpoint: the dispatcher's task, its state its checkpoint. */
export interface DeliveryRow {
  id: string;
  eventId: string;
  tenant: string;
  endpoint: string;
  state: DeliveryState;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
  /** The route that sent the event here. */
  route: string | null;
  /** The policy decision: {effect, policy, version, rule, reason}. */
  decision: Record<string, unknown> | null;
  approvalId: string | null;
  firstAttemptAt: number | null;
  /** A replay: the delivery of this event to this endpoint that it repeats (null: the first one). */
  replayOf: string | null;
  /** Who asked for the replay, or for the latest retry of this dead delivery. */
  requestedBy: string | null;
  /** Attempts made before the latest retry: max_attempts counts from here. */
  attemptBase: number;
  /** Spans of this task: part of the event's trace. */
  trace: Span[];
}

/**
 * A new delivery: the row with its counters and links defaulted. Its approval, first attempt and
 * attempt base start empty; checkpoints set them.
 */
export type NewDelivery = Pick<
  DeliveryRow,
  "id" | "eventId" | "tenant" | "endpoint" | "state" | "createdAt" | "updatedAt"
> &
  Partial<
    Pick<
      DeliveryRow,
      "attempts" | "lastStatus" | "lastError" | "route" | "decision" | "replayOf" | "requestedBy" | "trace"
    >
  >;

/** What a checkpoint or an operator's transition may change of a delivery. */
export type DeliveryPatch = Partial<
  Omit<DeliveryRow, "id" | "eventId" | "tenant" | "endpoint" | "createdAt" | "trace">
>;

/** One attempt of a delivery: when, how long, what came back or why it failed. */
export interface AttemptRow {
  id: number;
  deliveryId: string;
  attempt: number;
  startedAt: number;
  latencyMs: number;
  status: number | null;
  errorClass: string | null;
  error: string | null;
  excerpt: string | null;
}

export type NewAttempt = Pick<AttemptRow, "deliveryId" | "attempt" | "startedAt" | "latencyMs"> &
  Partial<Pick<AttemptRow, "status" | "errorClass" | "error" | "excerpt">>;

export interface DeliveryQuery {
  tenants?: readonly string[];
  eventId?: string;
  endpoint?: string;
  state?: string;
  /** Newest first, before this id (the cursor). */
  before?: string;
  limit: number;
}

/**
 * Counts per time bucket (EventStore.rates): bucket i covers [since + i·bucketMs, since + (i+1)·bucketMs),
 * the last one ending at `until` at the latest.
 */
export interface RateQuery {
  /** Only these tenants' events and deliveries (none: every tenant's). */
  tenants?: readonly string[];
  since: number;
  /** Exclusive. */
  until: number;
  bucketMs: number;
}

/** At most this many buckets in one `rates` query. */
export const RATE_BUCKETS_MAX = 1000;

export interface Rates {
  /** Events received (by `received_at`), one count per bucket, oldest first; an empty bucket is 0. */
  events: number[];
  /** Deliveries now `delivered`, by the time they last changed (when they got there). */
  delivered: number[];
  /** Deliveries now `dead` (given up), by the time they last changed. */
  dead: number[];
}

/**
 * Events and their deliveries. Ingresses insert an event inside the unit of work that also holds
 * its processing (its routing and deliveries, or its outbox entry); the dispatcher checkpoints each
 * delivery in the unit that also acks or re-enqueues its job; the API reads.
 */
export interface EventStore {
  /**
   * Insert an event unless its idempotency key was seen for this tenant and binding: then the
   * original's id, `created: false`. `routing` is set when the event is routed in this same unit
   * of work; without it the event waits for the router.
   */
  insertTx(
    tx: Tx,
    envelope: Envelope,
    trace?: readonly Span[],
    routing?: Record<string, unknown> | null,
  ): { id: string; created: boolean };
  /** Record what routing decided, and append its spans to the event's trace. */
  setRoutingTx(tx: Tx, eventId: string, routing: Record<string, unknown>, spans?: readonly Span[]): void;
  /** The event, unless it was routed already. */
  unroutedEventTx(tx: Tx, id: string): { envelope: Envelope; tenant: string } | null;
  /** A new delivery; false when the event already has a first delivery to that endpoint. */
  insertDeliveryTx(tx: Tx, row: NewDelivery): boolean;
  deliveryTx(tx: Tx, id: string): DeliveryRow | null;
  /** The newest delivery of an event to an endpoint (the one a replay repeats), if any. */
  latestDeliveryTx(tx: Tx, eventId: string, endpoint: string): DeliveryRow | null;
  /**
   * The dispatcher's checkpoint: `row` as it now is (all but its trace), `spans` appended to its
   * trace, `updatedAt` the unit's time. A delivery an operator discarded meanwhile stays discarded.
   */
  checkpointTx(tx: Tx, row: DeliveryRow, spans?: readonly Span[]): void;
  /** Change some fields of a delivery; `spans` are appended to its trace. */
  updateDeliveryTx(tx: Tx, id: string, patch: DeliveryPatch, spans?: readonly Span[]): void;
  /** Spans of a delivery that came after its last checkpoint. */
  appendSpansTx(tx: Tx, id: string, spans: readonly Span[]): void;
  /** Move a delivery on from one of `from` (an operator's retry or discard): the new row, or null when it was in another state. */
  transitionTx(tx: Tx, id: string, from: readonly DeliveryState[], patch: DeliveryPatch): DeliveryRow | null;
  insertAttemptTx(tx: Tx, attempt: NewAttempt): void;

  /** Newest first (`before`), or oldest first after `after`. */
  list(q: EventQuery): Promise<StoredEvent[]>;
  /**
   * One page of `list`, newest first from `before`, bounded in cost: the filters no index serves
   * (channel, time, state, search: all but the tenants, or the type when no tenant is named) are
   * checked against at most `scan` events, so a rare match costs `scan` rows, not the table.
   */
  page(q: Omit<EventQuery, "after"> & { scan: number }): Promise<EventPage>;
  /** Called after each commit with every event it inserted (not an idempotent repeat). */
  onInserted(listener: (tenant: string, id: string) => void): () => void;
  get(id: string): Promise<(StoredEvent & { tenant: string }) | null>;
  /** What routing decided about an event; null until it was routed. */
  getRouting(eventId: string): Promise<Record<string, unknown> | null>;
  /**
   * The event, unless it was routed already: routing's read. A driver may hand over an event its
   * process just inserted from memory, once.
   */
  getUnroutedEvent(id: string): Promise<{ envelope: Envelope; tenant: string } | null>;
  /** Newest first. */
  deliveries(q: DeliveryQuery): Promise<DeliveryRow[]>;
  getDelivery(id: string): Promise<DeliveryRow | null>;
  /** The newest delivery of an event to an endpoint, if any. */
  getLatestDelivery(eventId: string, endpoint: string): Promise<DeliveryRow | null>;
  /** The first deliveries (not replays) of an event. */
  listFirstDeliveries(eventId: string): Promise<DeliveryRow[]>;
  /** The deliveries parked on one approval. */
  listDeliveriesOfApproval(approvalId: string): Promise<DeliveryRow[]>;
  /** How many deliveries to one endpoint are in each state. */
  countDeliveries(tenant: string, endpoint: string): Promise<Record<string, number>>;
  /** A delivery's attempts, in order. */
  listAttempts(deliveryId: string): Promise<AttemptRow[]>;
  /**
   * Events received and deliveries delivered or dead per time bucket: the dashboard's charts. Reads
   * index ranges on time only, so its cost is the rows inside [since, until), not the tables.
   * More than RATE_BUCKETS_MAX buckets, or a bucket under 1 ms, is a RangeError.
   */
  rates(q: RateQuery): Promise<Rates>;
}

// Approvals (docs/desired-state.md#policies)

export const APPROVAL_STATES = ["pending", "approved", "denied", "expired"] as const;
export type ApprovalState = (typeof APPROVAL_STATES)[number];

/** Outbox topic announcing a decision (approved, denied, expired): the dispatcher resumes or drops the task. */
export const APPROVAL_DECIDED = "approval.decided";

export interface ApprovalRow {
  id: string;
  tenant: string;
  eventId: string | null;
  /** What waits: `{kind: "dispatch", target}` or `{kind: "tool.call", tool, args}`. */
  action: Record<string, unknown>;
  /** The decision that parked it: policy name, version, rule, reason. */
  policy: Record<string, unknown>;
  state: ApprovalState;
  createdAt: number;
  expiresAt: number;
  /** What an expired approval becomes: its action is then approved or denied. */
  onExpiry: "approve" | "deny";
  decidedBy: string | null;
  decidedAt: number | null;
  reason: string | null;
}

export interface ParkRequest {
  tenant: string;
  eventId?: string | null;
  action: Record<string, unknown>;
  policy: Record<string, unknown>;
  /** How long a person has to decide. */
  expiresInMs: number;
  /** What happens to the action if nobody decides in time. */
  onExpiry: "approve" | "deny";
}

/**
 * Actions parked until a person decides. Every transition is one unit of work with its audit
 * entry and its `APPROVAL_DECIDED` outbox event, so a decision is recorded, announced and applied
 * together or not at all.
 */
export interface ApprovalStore {
  /** Park an action inside the unit that moves its task to awaiting_approval (audited `approval.request`). */
  parkTx(tx: Tx, r: ParkRequest): ApprovalRow;
  park(r: ParkRequest): Promise<ApprovalRow>;
  /**
   * A person's decision. Only a pending approval can be decided (AppError not_found, conflict);
   * one whose time ran out is expired first, with its declared outcome, and the late decision is
   * refused (conflict).
   */
  decide(id: string, d: { approve: boolean; reason: string | null; actor: string }): Promise<ApprovalRow>;
  /** Expire every pending approval whose time ran out; how many. */
  expireDue(): Promise<number>;
  get(id: string): Promise<ApprovalRow | null>;
  /** Newest first. */
  list(q: { tenants?: readonly string[]; state?: string; before?: string; limit: number }): Promise<ApprovalRow[]>;
}

// Mail accepted over SMTP (docs/architecture.md#the-smtp-pipeline)

/** A recipient accepted at RCPT time, already resolved to its tenant, agent and binding. */
export interface MailRecipient {
  /** As the client wrote it. */
  address: string;
  tenant: string;
  agent: string;
  /** `agent+tag@…` → tag. */
  tag: string | null;
  binding: string;
}

export interface AcceptedMail {
  id: string;
  receivedAt: number;
  remoteIp: string;
  helo: string;
  mailFrom: string;
  recipients: MailRecipient[];
  tls: boolean;
  size: number;
  spool: { segment: string; offset: number; length: number };
  trace: Span[];
}

export interface MailRow {
  /** The queue id the client was told (`msg_…`). */
  id: string;
  receivedAt: number;
  remoteIp: string;
  helo: string;
  /** The envelope sender; "" for a bounce. */
  mailFrom: string;
  recipients: unknown[];
  tls: boolean;
  size: number;
  spoolSegment: string;
  spoolOffset: number;
  spoolLength: number;
  trace: Span[];
  state: "queued" | "processed" | "failed";
  /** The events made from it, one per tenant. */
  events: string[] | null;
  error: string | null;
  processedAt: number | null;
}

/** The SMTP ingress's messages: accepted in the unit that enqueues their processing, finished by it. */
export interface MailStore {
  insertTx(tx: Tx, m: AcceptedMail): void;
  /** Processed (the events made from it) or failed (`error`), at the unit's time. */
  finishTx(tx: Tx, id: string, outcome: { events: string[]; error?: string | null }): void;
  getMessage(id: string): Promise<MailRow | null>;
  /** Every spool segment a message refers to (what the spool may not delete). */
  listSpoolSegments(): Promise<Set<string>>;
}

// Vault secrets (docs/api.md#vault)

/** One version of a secret. The value is sealed by the vault; the store never sees it in clear. */
export interface SecretRow {
  tenant: string;
  name: string;
  version: number;
  /** The master key that wraps `wrappedKey`. */
  masterKeyId: string;
  wrappedKey: Uint8Array;
  sealedValue: Uint8Array;
  createdAt: number;
  createdBy: string;
  /** Null for the current version; a superseded one stays valid until then (its grace). */
  expiresAt: number | null;
  /** How often the secret should be rotated, for reminders; null: no schedule. */
  rotationPeriodMs: number | null;
  /** What the value looks like (noted when set, never the value); null when set before this was noted. */
  format: "whsec" | "opaque" | null;
}

export interface SecretKey {
  tenant: string;
  name: string;
}

/** The rows of the vault. Sealing, policy and auditing are the vault's (src/vault/). */
export interface SecretStore {
  /** A secret's versions, newest first; empty when it does not exist. */
  versionsTx(tx: Tx, s: SecretKey): SecretRow[];
  versions(s: SecretKey): Promise<SecretRow[]>;
  existsTx(tx: Tx, s: SecretKey): boolean;
  /** A new version (the caller numbers it); a repeated (tenant, name, version) fails. */
  insertTx(tx: Tx, row: SecretRow): void;
  /** Give the current version (the one without an expiry) of a secret an expiry: it was superseded. */
  expireCurrentTx(tx: Tx, s: SecretKey, expiresAt: number): void;
  /** Up to `limit` versions not sealed under `masterKeyId` (what a master-key rotation re-wraps next). */
  sealedWithOtherKeyTx(tx: Tx, masterKeyId: string, limit: number): SecretRow[];
  /** Store a version's data key wrapped under another master key. */
  rewrapTx(tx: Tx, s: SecretKey & { version: number }, wrapped: { masterKeyId: string; wrappedKey: Uint8Array }): void;
  /** The secrets of a tenant, or of every tenant, by tenant and name. */
  names(tenant?: string): Promise<SecretKey[]>;
}

// The agent pool (docs/agents.md)

/** A runtime's life: warm (`ready`), bound to a template and tenant (`claimed`), unresponsive (`stuck`), gone. */
export const RUNTIME_STATES = ["starting", "ready", "claimed", "stuck", "deleted"] as const;
export type RuntimeState = (typeof RUNTIME_STATES)[number];

/** How a runtime is isolated: bubblewrap (Linux), sandbox-exec (macOS), or a plain process where neither works. */
export const ISOLATIONS = ["bwrap", "sandbox-exec", "process"] as const;
export type Isolation = (typeof ISOLATIONS)[number];

export interface RuntimeRecord {
  id: string;
  state: RuntimeState;
  isolation: Isolation;
  /** Set at claim: the tenant, the agent name (an email tool's local part) and the template with the version used. */
  tenant: string | null;
  agent: string | null;
  template: string | null;
  templateVersion: number | null;
  /** The claim's user config without its secrets (those are in the vault). */
  userConfig: Record<string, unknown> | null;
  tokenHash: string;
  dir: string;
  socket: string;
  pid: number | null;
  /** Claimed while no runtime was ready: it was started for this claim. */
  cold: boolean;
  createdAt: number;
  readyAt: number | null;
  claimedAt: number | null;
  heartbeatAt: number | null;
  syncedAt: number | null;
  stuckAt: number | null;
  deletedAt: number | null;
  /** A destroy has begun: tools first, then the process and its directory (resumed after a crash). */
  destroying: boolean;
  error: string | null;
  /**
   * The node whose process runs it, on a database several nodes share: only that node claims it,
   * checks its heartbeat and finishes its destroy. Null on SQLite (one process is the only node).
   */
  node: string | null;
}

export type NewRuntime = Pick<RuntimeRecord, "id" | "isolation" | "tokenHash" | "dir" | "socket" | "cold"> & {
  createdAt: number;
  /** The node that starts it (null or absent: SQLite's one node). */
  node?: string | null;
};

export type RuntimePatch = Partial<
  Pick<
    RuntimeRecord,
    | "state"
    | "pid"
    | "tokenHash"
    | "readyAt"
    | "heartbeatAt"
    | "syncedAt"
    | "stuckAt"
    | "deletedAt"
    | "destroying"
    | "error"
    | "templateVersion"
    | "tenant"
    | "agent"
    | "template"
    | "userConfig"
    | "claimedAt"
    | "cold"
  >
>;

export const TOOL_STATES = ["creating", "active", "destroying", "destroyed"] as const;
export type ToolState = (typeof TOOL_STATES)[number];

/** One provisioned resource of one runtime (the seed's instance_services): a plugin needs no migration. */
export interface ToolRecord {
  id: string;
  runtimeId: string;
  tenant: string;
  /** The tool's id in the template (e.g. `reply`), and the plugin that provides it (e.g. `email`). */
  tool: string;
  plugin: string;
  provisioning: "pool" | "user";
  state: ToolState;
  /** What the plugin created: an address, a binding name, an endpoint name, a number. */
  resourceId: string | null;
  /** Non-secret configuration the runtime may see. */
  config: Record<string, unknown>;
  /** Where a `provisioning: user` tool's credentials are kept. */
  secretRef: string | null;
  createdAt: number;
  updatedAt: number;
}

export const TOOL_CALL_STATES = ["refused", "denied", "awaiting_approval", "running", "done", "failed"] as const;
export type ToolCallState = (typeof TOOL_CALL_STATES)[number];

export interface ToolCallRecord {
  id: string;
  runtimeId: string;
  tenant: string;
  eventId: string | null;
  tool: string;
  args: Record<string, unknown>;
  state: ToolCallState;
  approvalId: string | null;
  /** The policy decision (effect, policy, rule, reason). */
  decision: Record<string, unknown> | null;
  result: unknown;
  error: string | null;
  createdAt: number;
  finishedAt: number | null;
}

/** A new tool record: the store numbers it (`tl_…`) unless an id is given, and stamps its times. */
export type NewTool = Omit<ToolRecord, "id" | "createdAt" | "updatedAt"> & { id?: string };

export type ToolPatch = Partial<Pick<ToolRecord, "state" | "resourceId" | "config" | "secretRef">>;

/** A new tool call: the store numbers it (`tc_…`) unless an id is given, created at the unit's time. */
export type NewToolCall = Omit<ToolCallRecord, "id" | "createdAt" | "finishedAt"> & {
  id?: string;
  finishedAt?: number | null;
};

export type ToolCallPatch = Partial<
  Pick<ToolCallRecord, "state" | "approvalId" | "decision" | "result" | "error" | "finishedAt">
>;

/** What a claim writes onto the runtime it takes. */
export interface RuntimeClaim {
  tenant: string;
  agent: string;
  template: string;
  templateVersion: number;
  userConfig: Record<string, unknown> | null;
  /** Started for this claim because none was ready. */
  cold: boolean;
  /** Only a runtime of this node (its process runs here); null or absent: any (SQLite's one node). */
  node?: string | null;
}

export interface RuntimeQuery {
  tenants?: readonly string[];
  state?: RuntimeState;
  /** Only this node's runtimes; null or absent: any node's. */
  node?: string | null;
  /** By id, after this one (the cursor). */
  after?: string;
  limit: number;
}

/**
 * The agent pool's rows (docs/agents.md): runtimes, the tools provisioned for them and the tool
 * calls they made. Transitions that the pool or the tool calls combine with audit entries, outbox
 * events or approvals have a Tx variant; the rest commit on their own.
 */
export interface AgentStore {
  insertRuntimeTx(tx: Tx, r: NewRuntime): RuntimeRecord;
  insertRuntime(r: NewRuntime): Promise<RuntimeRecord>;
  getRuntimeTx(tx: Tx, id: string): RuntimeRecord | null;
  getRuntime(id: string): Promise<RuntimeRecord | null>;
  /** By id (oldest first); deleted ones only when asked for by state. */
  listRuntimes(q: RuntimeQuery): Promise<RuntimeRecord[]>;
  /** How many runtimes are in each state (deleted ones included). */
  countByState(): Promise<Record<RuntimeState, number>>;
  /** Move a runtime on from one of `from`: the new row, or null when it was in another state (or is gone). */
  transitionRuntimeTx(tx: Tx, id: string, from: readonly RuntimeState[], patch: RuntimePatch): RuntimeRecord | null;
  transitionRuntime(id: string, from: readonly RuntimeState[], patch: RuntimePatch): Promise<RuntimeRecord | null>;
  /**
   * Claim the oldest ready runtime (by ready time) for `claim`, claimed at the unit's time: the
   * claimed row, or null when none is ready. Two concurrent claims never get the same runtime.
   * An agent name already claimed in the tenant is AppError conflict.
   */
  claimReadyTx(tx: Tx, claim: RuntimeClaim): RuntimeRecord | null;
  /** The runtime claimed for an agent of a tenant, if any. */
  findClaimedTx(tx: Tx, tenant: string, agent: string): RuntimeRecord | null;
  findClaimed(tenant: string, agent: string): Promise<RuntimeRecord | null>;
  /** Every runtime not deleted (what the tick and reconcile walk), of one node when given. */
  liveRuntimes(node?: string | null): Promise<RuntimeRecord[]>;
  /** Record heartbeats in one unit; a heartbeat never moves back in time. */
  heartbeat(beats: readonly { id: string; at: number }[]): Promise<void>;

  insertToolTx(tx: Tx, t: NewTool): ToolRecord;
  /** Change a tool (only from one of `from` when given): the new row, or null. `updatedAt` is the unit's time. */
  updateToolTx(tx: Tx, id: string, patch: ToolPatch, from?: readonly ToolState[]): ToolRecord | null;
  updateTool(id: string, patch: ToolPatch, from?: readonly ToolState[]): Promise<ToolRecord | null>;
  getTool(id: string): Promise<ToolRecord | null>;
  /** A runtime's tools, oldest first (destroyed ones included). */
  listToolsTx(tx: Tx, runtimeId: string): ToolRecord[];
  listTools(runtimeId: string): Promise<ToolRecord[]>;
  /** Tools in 'creating' or 'destroying' of any runtime: what a crash left half done. */
  unsettledTools(): Promise<ToolRecord[]>;
  /** The routing lookup: the active tools of a plugin with this resource (an address, a binding, a number). */
  activeToolsByResource(plugin: string, resourceId: string): Promise<ToolRecord[]>;

  insertToolCallTx(tx: Tx, c: NewToolCall): ToolCallRecord;
  /** Move a tool call on from one of `from`: the new row, or null when it was in another state. */
  transitionToolCallTx(tx: Tx, id: string, from: readonly ToolCallState[], patch: ToolCallPatch): ToolCallRecord | null;
  getToolCallTx(tx: Tx, id: string): ToolCallRecord | null;
  getToolCall(id: string): Promise<ToolCallRecord | null>;
  /** Oldest first, of one runtime or of one event. */
  listToolCalls(q: { runtimeId?: string; eventId?: string; after?: string; limit: number }): Promise<ToolCallRecord[]>;
}

// Blobs (docs/architecture.md)

/**
 * Content-addressed blobs (attachments), named by the SHA-256 of their bytes (64 lower-case hex;
 * anything else is refused with AppError invalid_input). Written once, shared by every row that
 * names them, never changed. Files on disk for SQLite; in the database on PostgreSQL (every node reads them).
 */
export interface Blobs {
  /** Durable before it resolves. Idempotent: an existing blob is not written again. */
  put(bytes: Uint8Array): Promise<{ sha256: string; size: number }>;
  get(sha256: string): Promise<Uint8Array | null>;
  has(sha256: string): Promise<boolean>;
  /** Delete the named blobs; how many existed. */
  delete(sha256s: Iterable<string>): Promise<number>;
  /** Remove what puts that never finished left behind (start-up, under the data dir's lock); how many. */
  removeTemps(): Promise<number>;
}

/** Where one spooled message's raw bytes are: a segment, and a range in it. */
export interface SpoolRef {
  segment: string;
  offset: number;
  length: number;
}

/**
 * The SMTP spool kept in the database, so every node reads every node's mail (PostgreSQL:
 * docs/architecture.md#several-nodes). `append` resolves once the bytes are committed (before the
 * row that names them, so before the 250); bytes whose row never committed are left to `purge`.
 * SQLite has none: its spool is the segment files under the data dir (src/ingress/smtp/spool.ts).
 */
export interface SharedSpool {
  append(bytes: Uint8Array): Promise<SpoolRef>;
  /** Put a message at the place `ref` names (moving a SQLite appliance's spool in: its rows name these places). */
  writeAt(ref: SpoolRef, bytes: Uint8Array, at: number): Promise<void>;
  /** The message's bytes; null when retention purged them. */
  read(ref: SpoolRef): Promise<Uint8Array | null>;
  /** Delete what was spooled before `cutoff` (ms), every node's: how many segments and bytes went. */
  purge(cutoff: number): Promise<{ segments: number; bytes: number }>;
  /** The spool's size in bytes as last measured (for /metrics and the dashboard; refreshed in the background). */
  size(): number;
  close(): Promise<void>;
}

/**
 * Each endpoint's in-flight places across nodes (`max_in_flight` holds for all nodes together:
 * src/dispatch/endpoint-slots.ts asks here after its own count). Synchronous, as the routing fast
 * path decides at once: one statement on the committer's connection between its transactions.
 * A place is held until `release`, or until `ttlMs` passed (its node presumed dead).
 */
export interface SharedSlots {
  /** A free place of `key`'s first `limit` for `holder`: its number, or null when all are held. */
  take(key: string, limit: number, holder: string, ttlMs: number): number | null;
  /** Give the place back (asynchronously: a place freed a moment late is only conservative). */
  release(key: string, slot: number, holder: string): void;
}

/**
 * Named leases for the work that must run on one node at a time (the outbox relay, the approvals
 * follower, the periodic jobs: src/workers/singleton.ts). A holder renews its lease well within
 * `ttlMs`; when it stops renewing (its node died), another holder gets the lease once it expired.
 * Times are the holders' clocks: their skew comes off the lease period.
 */
export interface SingletonLeases {
  /** Take `name` for `holder` until `ttlMs` from now, or renew it: true while `holder` has it. */
  acquire(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Give `name` up (a clean stop), so that another holder takes it at once; nothing if not held. */
  release(name: string, holder: string): Promise<void>;
}

/** What opening a storage takes, whatever the driver. */
export interface StorageOptions {
  /** The data dir: the database (for SQLite) and the blobs live under it. */
  dir: string;
  /** A PostgreSQL URL: the PostgreSQL driver instead of SQLite in `dir` (docs/architecture.md#the-postgresql-driver). */
  databaseUrl?: string | null;
  /** How long the committer waits for more work before committing; 0: at the end of this event-loop turn. */
  windowMs?: number;
  /** Units of work per commit at most. */
  maxBatch?: number;
  clock?: Clock;
  random?: Random;
  /** Observes every commit (metrics). */
  onCommit?: (units: number, seconds: number, ok: boolean) => void;
}

// Retention (docs/operations.md#retention)

/** Per-tenant cutoffs (ms since the epoch): what is older goes. */
export interface RetentionCutoffs {
  cutoffFor(tenant: string | null): number;
  /** The latest cutoff of all: nothing at or after it goes, whatever its tenant. */
  newest(): number;
}

export interface RetentionSwept {
  events: number;
  /** Events whose parsed content was dropped (the event stays). */
  contents: number;
  attempts: number;
  blobs: number;
  /** Deleted agent runtimes (with their tools and tool calls), by the event retention. */
  runtimes: number;
}

/**
 * Deletes what each tenant's retention lets go (events, parsed content, attempts, blobs no kept
 * event names, and deleted agent runtimes by the event retention), then gives the freed space
 * back to the disk.
 */
export interface Retention {
  sweep(cutoffs: {
    events: RetentionCutoffs;
    content: RetentionCutoffs;
    attempts: RetentionCutoffs;
  }): Promise<RetentionSwept>;
  /** Return free pages to the filesystem, a step at a time; how much. */
  vacuum(): Promise<{ pages: number; bytes: number }>;
}

export interface Storage {
  readonly driver: "sqlite" | "postgres";
  /**
   * Other processes may use the same database (PostgreSQL: several nodes). False for SQLite, whose
   * one process holds the data dir's lock: a lease still held at start-up is then a dead process's.
   */
  readonly shared: boolean;
  readonly leases: SingletonLeases;
  readonly committer: Committer<Tx>;
  readonly queue: JobQueue;
  readonly outbox: Outbox;
  readonly audit: AuditLog;
  readonly resources: ResourceStore;
  readonly tokens: TokenStore;
  readonly events: EventStore;
  readonly approvals: ApprovalStore;
  readonly mail: MailStore;
  readonly secrets: SecretStore;
  readonly users: UserStore;
  readonly sessions: SessionStore;
  readonly agents: AgentStore;
  readonly blobs: Blobs;
  /** The SMTP spool in the database, when several nodes share it; null: the data dir's spool files. */
  readonly spool: SharedSpool | null;
  /** Endpoint places counted across nodes; null: one process, its own count suffices. */
  readonly slots: SharedSlots | null;
  /** Per-tenant retention; optional: a driver without it keeps everything. */
  readonly retention?: Retention;
  /** What opening did to the schema: the migrations applied now, and the schema version. */
  readonly migration: { applied: string[]; version: number };
  /** A durable write through the committer, for readiness checks. */
  probeWrite(): Promise<void>;
  /**
   * Start the driver's own upkeep off the event loop (SQLite: WAL checkpoints on a worker thread,
   * so no COMMIT copies pages); the appliance calls it, tests and tools need not. Errors go to
   * `onError`, one sentence each.
   */
  background(onError: (message: string) => void): { stop(): Promise<void> };
  close(): Promise<void>;
}
