import { randomBytes, timingSafeEqual } from "node:crypto";
import { availableParallelism } from "node:os";
import type { Principal } from "../api/auth.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import type { NewAuditEntry, Storage, UserRecord, UserRole } from "../store/index.ts";

/**
 * Console users, their passwords and their sessions (docs/console.md#users-and-sign-in). Every
 * change is one unit of work with its audit entry. The console resolves a request to a user with
 * `session()`, and acts as `principalOf(user)` through the same permission checks as the API.
 */

export interface ConsoleUser {
  id: string;
  username: string;
  role: UserRole;
  tenants: readonly string[];
}

/** A user as the API and `agentowl users ls` show them (never the hash). */
export interface UserInfo extends ConsoleUser {
  createdAt: number;
  updatedAt: number;
  /** Sign-ins are refused until then; null when not locked. */
  lockedUntil: number | null;
}

export interface ConsoleSession {
  id: string;
  user: ConsoleUser;
  csrf: string;
  /** The absolute end of the session (ms since the epoch); idle expiry may end it sooner. */
  expiresAt: number;
}

export type SignInResult =
  | { ok: true; token: string; session: ConsoleSession }
  | { ok: false; reason: "bad_credentials" }
  | { ok: false; reason: "locked"; retryAfterMs: number };

export const SESSION_COOKIE = "agentowl_session";

export const USERNAME_PATTERN = /^[a-z0-9._-]{1,64}$/;
const USERNAME_RULE = "must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-'";
export const PASSWORD_MIN = 12;
/** Long enough for any passphrase; bounds the hashing work one request can ask for. */
export const PASSWORD_MAX = 1024;
/** Consecutive failures that lock a username. */
export const LOCK_AFTER = 5;
export const LOCK_FIRST_MS = 60_000;
export const LOCK_MAX_MS = 3_600_000;
export const DEFAULT_IDLE_MS = 30 * 60_000;
export const DEFAULT_MAX_MS = 12 * 3_600_000;
/** Tenants one member may belong to. */
const MAX_TENANTS = 1000;

export interface UsersDeps {
  /** The storage's clock should be the same one: a session's last-seen time is the commit's. */
  storage: Storage;
  clock?: Clock;
  /** `console_session_idle`, `console_session_max` (src/config/schema.ts). */
  idleMs?: number;
  maxMs?: number;
  /** AGENTOWL_BOOTSTRAP_TOKEN: what `createFirstAdmin` takes as proof; null: it refuses. */
  bootstrapToken?: string | null;
}

const sha256 = (text: string): Buffer => new Bun.CryptoHasher("sha256").update(text).digest() as Buffer;
const sha256Hex = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex");
const randomToken = (): string => randomBytes(32).toString("base64url");
/** A cookie value longer than any token this service makes is not looked up. */
const MAX_TOKEN_LENGTH = 128;

const toUser = (r: UserRecord): ConsoleUser => ({ id: r.id, username: r.username, role: r.role, tenants: r.tenants });
const toInfo = (r: UserRecord): UserInfo => ({
  ...toUser(r),
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
  lockedUntil: r.lockedUntil,
});

/** The lock after the `level`-th lock in a row: 1 min, doubling, at most 1 h. */
export function lockDuration(level: number): number {
  return Math.min(LOCK_FIRST_MS * 2 ** Math.max(0, level - 1), LOCK_MAX_MS);
}

/**
 * Each argon2id hash or verify takes 64 MiB and a core for tens of milliseconds: at most one per
 * core at once, so a flood of sign-ins queues instead of taking the memory and every core.
 */
class HashSlots {
  private busy = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly size: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.busy >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.busy++;
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.busy--;
    }
  }
}
const slots = new HashSlots(Math.max(1, Math.min(4, availableParallelism())));
const hash = (password: string) => slots.run(() => Bun.password.hash(password, { algorithm: "argon2id" }));
const verify = (password: string, h: string) => slots.run(() => Bun.password.verify(password, h)).catch(() => false);

/** A verify against this runs for unknown usernames, so the answer takes as long as for a known one. */
let dummyHash: Promise<string> | null = null;
const dummy = () => (dummyHash ??= hash(randomToken()));

/** A 422 whose detail is a sentence on its own (the CLI prints only it) and whose field error names the field. */
function invalid(field: string, message: string, detail: string): AppError {
  return new AppError("invalid_input", detail, { errors: [{ field, message }] });
}

/** A username as stored: lower-case; one that can never exist is null. */
export function normalizeUsername(name: string): string | null {
  const n = name.toLowerCase();
  return USERNAME_PATTERN.test(n) ? n : null;
}

export function checkPassword(password: string, field = "/password"): void {
  if (typeof password !== "string" || password.length < PASSWORD_MIN)
    throw invalid(
      field,
      `must be at least ${PASSWORD_MIN} characters`,
      `the password must be at least ${PASSWORD_MIN} characters`,
    );
  if (password.length > PASSWORD_MAX)
    throw invalid(
      field,
      `must be at most ${PASSWORD_MAX} characters`,
      `the password must be at most ${PASSWORD_MAX} characters`,
    );
}

export class Users {
  private readonly storage: Storage;
  private readonly clock: Clock;
  private readonly idleMs: number;
  private readonly maxMs: number;
  private readonly bootstrapToken: string | null;
  /** Touch a session's last-seen time at most this often: not a commit for every request. */
  private readonly touchEveryMs: number;

  constructor(deps: UsersDeps) {
    this.storage = deps.storage;
    this.clock = deps.clock ?? systemClock;
    this.idleMs = deps.idleMs ?? DEFAULT_IDLE_MS;
    this.maxMs = deps.maxMs ?? DEFAULT_MAX_MS;
    this.bootstrapToken = deps.bootstrapToken ?? null;
    this.touchEveryMs = Math.min(60_000, Math.floor(this.idleMs / 10));
  }

  // ---- signing in and out ------------------------------------------------------------------

  async signIn(username: string, password: string, remote: string): Promise<SignInResult> {
    const name = normalizeUsername(String(username));
    const user = name ? await this.storage.users.get(name) : null;
    const now = this.clock.now();
    if (user && user.lockedUntil !== null && user.lockedUntil > now) {
      await this.audit({
        actor: `user:${user.username}`,
        action: "user.sign_in_failed",
        target: `user:${user.username}`,
        decision: "deny",
        details: { reason: "locked", remote, locked_until: user.lockedUntil },
      });
      return { ok: false, reason: "locked", retryAfterMs: user.lockedUntil - now };
    }
    const pw = typeof password === "string" && password.length <= PASSWORD_MAX ? password : "";
    const ok = await verify(pw, user ? user.passwordHash : await dummy());
    if (!user || !ok) {
      const locked = await this.recordFailure(name, remote);
      return locked === null ? { ok: false, reason: "bad_credentials" } : locked;
    }
    const token = randomToken();
    return this.storage.committer.run((tx): SignInResult => {
      // Read again inside the unit: failures committed while the password was checked may have locked it.
      const current = this.storage.users.getTx(tx, user.username);
      if (!current || current.id !== user.id) return { ok: false, reason: "bad_credentials" };
      if (current.lockedUntil !== null && current.lockedUntil > tx.now)
        return { ok: false, reason: "locked", retryAfterMs: current.lockedUntil - tx.now };
      if (current.failedCount !== 0 || current.lockLevel !== 0 || current.lockedUntil !== null)
        this.storage.users.updateTx(tx, current.username, { failedCount: 0, lockLevel: 0, lockedUntil: null });
      const row = this.storage.sessions.createTx(tx, {
        id: sha256Hex(token),
        userId: current.id,
        csrf: randomToken(),
        expiresAt: tx.now + this.maxMs,
      });
      this.storage.audit.appendTx(tx, {
        actor: `user:${current.username}`,
        action: "user.signed_in",
        target: `user:${current.username}`,
        decision: "allow",
        details: { remote, method: "password" },
      });
      return {
        ok: true,
        token,
        session: { id: row.id, user: toUser(current), csrf: row.csrf, expiresAt: row.expiresAt },
      };
    });
  }

  /**
   * Count a failed sign-in. The fifth failure in a row locks the username for a minute; every
   * failure after that (once the lock has passed) locks it again for twice as long, up to an
   * hour, until a sign-in succeeds or the password is changed. An unknown username has no row to
   * count on: only its entry is written.
   */
  private async recordFailure(
    name: string | null,
    remote: string,
  ): Promise<{ ok: false; reason: "locked"; retryAfterMs: number } | null> {
    return this.storage.committer.run((tx) => {
      const user = name ? this.storage.users.getTx(tx, name) : null;
      if (!user) {
        this.storage.audit.appendTx(tx, {
          actor: name ? `user:${name}` : "anonymous",
          action: "user.sign_in_failed",
          target: name ? `user:${name}` : null,
          decision: "deny",
          // A name that could be a user's is kept; anything else might be a password typed in the wrong field.
          details: { reason: "bad_credentials", username: name, remote },
        });
        return null;
      }
      const failedCount = user.failedCount + 1;
      const lock = failedCount >= LOCK_AFTER;
      const lockLevel = lock ? user.lockLevel + 1 : user.lockLevel;
      const lockedUntil = lock ? tx.now + lockDuration(lockLevel) : user.lockedUntil;
      this.storage.users.updateTx(tx, user.username, { failedCount, lockLevel, lockedUntil });
      const who = `user:${user.username}`;
      this.storage.audit.appendTx(tx, {
        actor: who,
        action: "user.sign_in_failed",
        target: who,
        decision: "deny",
        details: { reason: "bad_credentials", remote, failed_count: failedCount },
      });
      if (!lock) return null;
      this.storage.audit.appendTx(tx, {
        actor: "system",
        action: "user.locked",
        target: who,
        details: { until: lockedUntil, level: lockLevel, failed_count: failedCount, remote },
      });
      return { ok: false as const, reason: "locked" as const, retryAfterMs: lockedUntil! - tx.now };
    });
  }

  /** The live session for a cookie value (idle and absolute expiry checked, last-seen touched), or null. */
  async session(token: string): Promise<ConsoleSession | null> {
    if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return null;
    const row = await this.storage.sessions.get(sha256Hex(token));
    const now = this.clock.now();
    if (!row || row.revokedAt !== null || row.expiresAt <= now || row.lastSeenAt + this.idleMs <= now) return null;
    const user = await this.storage.users.getById(row.userId);
    if (!user) return null;
    if (now - row.lastSeenAt >= this.touchEveryMs) await this.storage.sessions.touch(row.id, now);
    return { id: row.id, user: toUser(user), csrf: row.csrf, expiresAt: row.expiresAt };
  }

  /**
   * The user of a session (by its id) while the session is live, as `session` decides it, but
   * without counting as activity: a page's open live stream asks at every ping, and must not keep
   * an idle session alive.
   */
  async sessionUser(sessionId: string): Promise<ConsoleUser | null> {
    const row = await this.storage.sessions.get(sessionId);
    const now = this.clock.now();
    if (!row || row.revokedAt !== null || row.expiresAt <= now || row.lastSeenAt + this.idleMs <= now) return null;
    const user = await this.storage.users.getById(row.userId);
    return user ? toUser(user) : null;
  }

  /** End the session of this cookie value (nothing when there is none); `actor` is who signed out. */
  async signOut(token: string, actor: string): Promise<void> {
    if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return;
    const id = sha256Hex(token);
    // A session that has ended already is not ended (nor audited) again.
    const live = await this.storage.sessions.get(id);
    if (!live || live.revokedAt !== null) return;
    await this.storage.committer.run((tx) => {
      const row = this.storage.sessions.revokeTx(tx, id);
      if (!row) return;
      this.storage.audit.appendTx(tx, {
        actor,
        action: "user.signed_out",
        target: null,
        details: { session: id.slice(0, 16) },
      });
    });
  }

  /** Delete sessions that can no longer be used (a maintenance task may call it); how many. */
  purgeSessions(): Promise<number> {
    const now = this.clock.now();
    return this.storage.sessions.purge(now, now - this.idleMs);
  }

  // ---- the users ---------------------------------------------------------------------------

  /** How many users exist (0: the console offers "create the first admin" with the bootstrap token). */
  count(): Promise<number> {
    return this.storage.users.count();
  }

  async get(username: string): Promise<UserInfo | null> {
    const name = normalizeUsername(username);
    const r = name ? await this.storage.users.get(name) : null;
    return r ? toInfo(r) : null;
  }

  /** By username, after `after` (a keyset cursor). */
  async list(q: { after?: string; limit: number }): Promise<UserInfo[]> {
    return (await this.storage.users.list(q)).map(toInfo);
  }

  create(
    u: { username: string; password: string; role: UserRole; tenants?: string[] },
    actor: string,
  ): Promise<ConsoleUser> {
    return this.insert(u, actor, false);
  }

  /**
   * The first admin, with the bootstrap token (AGENTOWL_BOOTSTRAP_TOKEN) as proof: only while no
   * user exists, and only with that token (compared in constant time). Forbidden otherwise.
   */
  async createFirstAdmin(bootstrapToken: string, username: string, password: string): Promise<ConsoleUser> {
    const expected = this.bootstrapToken;
    const offered = typeof bootstrapToken === "string" ? bootstrapToken : "";
    // Digests of both: equal lengths for timingSafeEqual, whatever the length of what was sent.
    const matches = expected !== null && timingSafeEqual(sha256(offered), sha256(expected));
    if (!matches) throw new AppError("forbidden", "the bootstrap token is not valid");
    return this.insert({ username, password, role: "admin" }, "bootstrap_token", true);
  }

  /** The first admin created by `agentowl init`, when there is no user yet; null when there is. */
  async createInitialAdmin(username: string, password: string, actor: string): Promise<ConsoleUser | null> {
    try {
      return await this.insert({ username, password, role: "admin" }, actor, true);
    } catch (e) {
      if (e instanceof AppError && e.kind === "conflict" && (await this.count()) > 0) return null;
      throw e;
    }
  }

  private async insert(
    u: { username: string; password: string; role: UserRole; tenants?: string[] },
    actor: string,
    onlyFirst: boolean,
  ): Promise<ConsoleUser> {
    const username = normalizeUsername(String(u.username ?? ""));
    if (!username) throw invalid("/username", USERNAME_RULE, `the username ${USERNAME_RULE}`);
    checkPassword(u.password);
    const tenants = await this.checkRole(u.role, u.tenants);
    const passwordHash = await hash(u.password);
    return this.storage.committer.run((tx) => {
      if (onlyFirst && this.storage.users.countTx(tx) > 0)
        throw new AppError("conflict", "a user exists already: the first admin was created before");
      const row = this.storage.users.createTx(tx, { username, passwordHash, role: u.role, tenants });
      this.storage.audit.appendTx(tx, {
        actor,
        action: "user.created",
        target: `user:${username}`,
        details: { id: row.id, role: row.role, tenants: row.tenants },
      });
      return toUser(row);
    });
  }

  /** A member belongs to at least one existing tenant; an admin to none (it works in every one). */
  private async checkRole(role: UserRole, tenants: readonly string[] | undefined): Promise<string[]> {
    if (role !== "admin" && role !== "member")
      throw invalid("/role", "must be admin or member", "the role must be admin or member");
    const list = [...new Set(tenants ?? [])];
    if (role === "admin") {
      if (list.length)
        throw invalid("/tenants", "an admin has no tenants", "an admin works in every tenant: give no tenants");
      return [];
    }
    if (!list.length) throw invalid("/tenants", "at least one", "a member needs at least one tenant (--tenant)");
    if (list.length > MAX_TENANTS)
      throw invalid("/tenants", `at most ${MAX_TENANTS}`, `a member may have at most ${MAX_TENANTS} tenants`);
    const unknown: string[] = [];
    for (const t of list) {
      const ok = typeof t === "string" && (await this.storage.resources.get({ tenant: t, kind: "tenants", name: t }));
      if (!ok) unknown.push(String(t).slice(0, 64));
    }
    if (unknown.length)
      throw invalid("/tenants", `no such tenant: ${unknown.join(", ")}`, `no such tenant: ${unknown.join(", ")}`);
    return list;
  }

  /**
   * A new password: every session of the user ends, and a lock is lifted (an admin setting a
   * password is how a locked-out person gets back in at once).
   */
  async setPassword(username: string, password: string, actor: string): Promise<void> {
    const name = normalizeUsername(username);
    checkPassword(password);
    if (!name || !(await this.storage.users.get(name))) throw new AppError("not_found", `user ${username} not found`);
    const passwordHash = await hash(password);
    await this.storage.committer.run((tx) => {
      const row = this.storage.users.updateTx(tx, name, {
        passwordHash,
        failedCount: 0,
        lockLevel: 0,
        lockedUntil: null,
      });
      if (!row) throw new AppError("not_found", `user ${username} not found`);
      const ended = this.storage.sessions.revokeAllOfUserTx(tx, row.id);
      this.storage.audit.appendTx(tx, {
        actor,
        action: "user.password_changed",
        target: `user:${name}`,
        details: { sessions_ended: ended },
      });
    });
  }

  /** Change a user's role and tenants; sessions stay, and see the new rights at their next request. */
  async update(username: string, patch: { role?: UserRole; tenants?: string[] }, actor: string): Promise<UserInfo> {
    const name = normalizeUsername(username);
    const current = name ? await this.storage.users.get(name) : null;
    if (!name || !current) throw new AppError("not_found", `user ${username} not found`);
    const role = patch.role ?? current.role;
    const tenants = await this.checkRole(
      role,
      patch.tenants ?? (role === "admin" ? [] : role === current.role ? current.tenants : undefined),
    );
    return this.storage.committer.run((tx) => {
      const row = this.storage.users.updateTx(tx, name, { role, tenants });
      if (!row) throw new AppError("not_found", `user ${username} not found`);
      this.storage.audit.appendTx(tx, {
        actor,
        action: "user.updated",
        target: `user:${name}`,
        details: { role, tenants, was: { role: current.role, tenants: current.tenants } },
      });
      return toInfo(row);
    });
  }

  /** Delete a user; their sessions end with them. */
  async remove(username: string, actor: string): Promise<void> {
    const name = normalizeUsername(username);
    if (!name) throw new AppError("not_found", `user ${username} not found`);
    await this.storage.committer.run((tx) => {
      const row = this.storage.users.deleteTx(tx, name);
      if (!row) throw new AppError("not_found", `user ${username} not found`);
      this.storage.audit.appendTx(tx, {
        actor,
        action: "user.deleted",
        target: `user:${name}`,
        details: { id: row.id, role: row.role },
      });
    });
  }

  /** The API's Principal for a user: admin → scopes ["admin"]; member → tenant:<t>:write for each tenant. */
  principalOf(user: ConsoleUser): Principal {
    return {
      tokenId: user.id,
      name: `user:${user.username}`,
      scopes: user.role === "admin" ? ["admin"] : user.tenants.map((t) => `tenant:${t}:write`),
    };
  }

  private async audit(e: NewAuditEntry): Promise<void> {
    await this.storage.audit.append(e);
  }
}
