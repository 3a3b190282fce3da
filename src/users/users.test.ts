import { describe, expect, test } from "bun:test";
import { availableParallelism } from "node:os";
import { ManualClock } from "../core/clock.ts";
import { tempStorages } from "../../test/helpers/storage.ts";
import { lockDuration, SESSION_COOKIE, type SignInResult, Users } from "./index.ts";

const storages = tempStorages();
const PASSWORD = "correct horse battery";
const BOOT = "bootstrap-0123456789abcdefghij";
const MIN = 60_000;

async function setup(opts: { idleMs?: number; maxMs?: number; bootstrapToken?: string | null } = {}) {
  const clock = new ManualClock();
  const storage = storages({ clock });
  await storage.resources.transact((tx) => {
    for (const t of ["beta", "acme"])
      storage.resources.putTx(tx, { tenant: t, kind: "tenants", name: t }, { name: t }, { mode: "create", actor: "t" });
  });
  const users = new Users({ storage, clock, bootstrapToken: BOOT, ...opts });
  return { clock, storage, users };
}

function signedIn(r: SignInResult): Extract<SignInResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected a sign-in, got ${r.reason}`);
  return r;
}

const actions = async (storage: { audit: { list(q: { limit: number }): Promise<{ action: string }[]> } }) =>
  (await storage.audit.list({ limit: 100 })).map((e) => e.action).reverse();

describe("signing in", () => {
  test("the right password opens a session whose token is looked up by its hash; the wrong one and an unknown name do not", async () => {
    const { storage, users } = await setup();
    const ann = await users.create({ username: "Ann", password: PASSWORD, role: "member", tenants: ["beta"] }, "test");
    expect(ann).toMatchObject({ username: "ann", role: "member", tenants: ["beta"] });

    const r = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    expect(r.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(r.session.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(r.session.user).toEqual(ann);
    // The stored id is the token's SHA-256: the database holds nothing that signs in.
    expect(r.session.id).toBe(new Bun.CryptoHasher("sha256").update(r.token).digest("hex"));
    expect(r.session.id).not.toContain(r.token);
    expect((await users.session(r.token))?.user.username).toBe("ann");
    expect(await users.session(r.session.id)).toBeNull();

    expect(await users.signIn("ann", "wrong password!", "10.0.0.7")).toEqual({ ok: false, reason: "bad_credentials" });
    expect(await users.signIn("nobody", PASSWORD, "10.0.0.7")).toEqual({ ok: false, reason: "bad_credentials" });
    expect(await users.signIn("NOT A NAME", PASSWORD, "10.0.0.7")).toEqual({ ok: false, reason: "bad_credentials" });
    expect(SESSION_COOKIE).toBe("agentowl_session");

    const entries = await storage.audit.list({ limit: 100 });
    expect(entries.map((e) => [e.action, e.actor]).reverse()).toEqual([
      ["user.created", "test"],
      ["user.signed_in", "user:ann"],
      ["user.sign_in_failed", "user:ann"],
      ["user.sign_in_failed", "user:nobody"],
      ["user.sign_in_failed", "anonymous"],
    ]);
    expect(entries.find((e) => e.action === "user.signed_in")?.details).toMatchObject({ remote: "10.0.0.7" });
    // No entry carries a password or a token.
    const text = JSON.stringify(entries);
    for (const secret of [PASSWORD, "wrong password!", r.token, r.session.csrf]) expect(text).not.toContain(secret);
  });

  test("an unknown username takes a password verify too, so its answer takes as long as a known one's", async () => {
    const { users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    const calls: string[] = [];
    const verify = Bun.password.verify;
    Bun.password.verify = (async (pw: string, hash: string) => {
      calls.push(hash.slice(0, 9));
      return verify(pw, hash);
    }) as typeof Bun.password.verify;
    try {
      await users.signIn("nobody", PASSWORD, "10.0.0.7");
      await users.signIn("ann", "wrong password!", "10.0.0.7");
    } finally {
      Bun.password.verify = verify;
    }
    expect(calls).toEqual(["$argon2id", "$argon2id"]);
  });

  test("a flood of sign-ins runs at most one password hash per core (up to 4) at once", async () => {
    const { users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    let running = 0;
    let most = 0;
    const verify = Bun.password.verify;
    Bun.password.verify = (async (pw: string, hash: string) => {
      most = Math.max(most, ++running);
      try {
        return await verify(pw, hash);
      } finally {
        running--;
      }
    }) as typeof Bun.password.verify;
    try {
      await Promise.all(
        Array.from({ length: 12 }, (_, i) => users.signIn(i % 2 ? "ann" : "nobody", "x".repeat(12), "10.0.0.7")),
      );
    } finally {
      Bun.password.verify = verify;
    }
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(Math.min(4, availableParallelism()));
  });

  test("five failures in a row lock the name for a minute; the right password is refused until then and accepted after", async () => {
    const { clock, storage, users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    for (let i = 0; i < 4; i++)
      expect(await users.signIn("ann", "wrong password!", "10.0.0.7")).toEqual({
        ok: false,
        reason: "bad_credentials",
      });
    expect(await users.signIn("ann", "wrong password!", "10.0.0.7")).toEqual({
      ok: false,
      reason: "locked",
      retryAfterMs: MIN,
    });
    clock.advance(20_000);
    expect(await users.signIn("ann", PASSWORD, "10.0.0.7")).toEqual({
      ok: false,
      reason: "locked",
      retryAfterMs: 40_000,
    });
    clock.advance(40_000);
    signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    expect(await actions(storage)).toEqual([
      "user.created",
      ...Array(5).fill("user.sign_in_failed"),
      "user.locked",
      "user.sign_in_failed",
      "user.signed_in",
    ]);
    const locked = (await storage.audit.list({ limit: 100 })).find((e) => e.action === "user.locked");
    expect(locked).toMatchObject({ target: "user:ann", details: { level: 1, failed_count: 5 } });
  });

  test("each further lock doubles, up to an hour, and a success starts the count again", async () => {
    const { clock, users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    const fail = () => users.signIn("ann", "wrong password!", "10.0.0.7");
    for (let i = 0; i < 4; i++) await fail();
    const seen: number[] = [];
    for (let lock = 1; lock <= 9; lock++) {
      const r = await fail();
      if (r.ok || r.reason !== "locked") throw new Error(`lock ${lock}: ${JSON.stringify(r)}`);
      seen.push(r.retryAfterMs);
      clock.advance(r.retryAfterMs);
    }
    expect(seen).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60].map((m) => m * MIN));
    expect([1, 2, 7, 8].map(lockDuration)).toEqual([MIN, 2 * MIN, 60 * MIN, 60 * MIN]);

    signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    for (let i = 0; i < 4; i++) expect(await fail()).toEqual({ ok: false, reason: "bad_credentials" });
    expect(await fail()).toEqual({ ok: false, reason: "locked", retryAfterMs: MIN });
  });
});

describe("sessions", () => {
  test("a session unused for the idle time ends; use keeps it alive", async () => {
    const { clock, users } = await setup({ idleMs: 30 * MIN });
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    const { token } = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    for (let i = 0; i < 4; i++) {
      clock.advance(20 * MIN);
      expect(await users.session(token)).not.toBeNull();
    }
    clock.advance(30 * MIN);
    expect(await users.session(token)).toBeNull();
  });

  test("a live stream's check reads a session's user without keeping the session alive", async () => {
    const { clock, users } = await setup({ idleMs: 30 * MIN });
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    const { token, session } = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    for (let i = 0; i < 2; i++) {
      clock.advance(10 * MIN);
      expect((await users.sessionUser(session.id))?.username).toBe("ann");
    }
    clock.advance(10 * MIN);
    expect(await users.sessionUser(session.id)).toBeNull();
    expect(await users.session(token)).toBeNull();
    const again = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    await users.signOut(again.token, "user:ann");
    expect(await users.sessionUser(again.session.id)).toBeNull();
  });

  test("a session ends at its absolute end however active it is", async () => {
    const { clock, users } = await setup({ idleMs: 30 * MIN, maxMs: 60 * MIN });
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    const start = clock.now();
    const { token, session } = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    expect(session.expiresAt).toBe(start + 60 * MIN);
    for (let i = 0; i < 5; i++) {
      clock.advance(10 * MIN);
      expect(await users.session(token)).not.toBeNull();
    }
    clock.advance(10 * MIN);
    expect(await users.session(token)).toBeNull();
  });

  test("signing out ends the session, and only that one", async () => {
    const { storage, users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    const a = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    const b = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.8"));
    await users.signOut(a.token, "user:ann");
    expect(await users.session(a.token)).toBeNull();
    expect(await users.session(b.token)).not.toBeNull();
    await users.signOut(a.token, "user:ann"); // again: nothing to end, nothing audited
    await users.signOut("not-a-token", "user:ann");
    expect((await actions(storage)).filter((a) => a === "user.signed_out")).toHaveLength(1);
  });

  test("a new password ends every session of the user, lifts a lock, and the old password stops working", async () => {
    const { storage, users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    await users.create({ username: "bo", password: PASSWORD, role: "admin" }, "test");
    const a1 = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    const a2 = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.8"));
    const b = signedIn(await users.signIn("bo", PASSWORD, "10.0.0.9"));
    for (let i = 0; i < 5; i++) await users.signIn("ann", "wrong password!", "10.0.0.7");
    await expect(users.setPassword("ann", "short", "token:tok_x")).rejects.toMatchObject({ kind: "invalid_input" });
    await users.setPassword("ann", "a new passphrase", "token:tok_x");
    expect(await users.session(a1.token)).toBeNull();
    expect(await users.session(a2.token)).toBeNull();
    expect(await users.session(b.token)).not.toBeNull();
    expect(await users.signIn("ann", PASSWORD, "10.0.0.7")).toEqual({ ok: false, reason: "bad_credentials" });
    signedIn(await users.signIn("ann", "a new passphrase", "10.0.0.7"));
    const entry = (await storage.audit.list({ limit: 100 })).find((e) => e.action === "user.password_changed");
    expect(entry).toMatchObject({ actor: "token:tok_x", target: "user:ann", details: { sessions_ended: 2 } });
    expect(JSON.stringify(entry)).not.toContain("a new passphrase");
    await expect(users.setPassword("nobody", "a new passphrase", "t")).rejects.toMatchObject({ kind: "not_found" });
  });

  test("deleting a user ends their sessions", async () => {
    const { storage, users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "admin" }, "test");
    const { token } = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    await users.remove("ann", "token:tok_x");
    expect(await users.session(token)).toBeNull();
    expect(await users.count()).toBe(0);
    await expect(users.remove("ann", "token:tok_x")).rejects.toMatchObject({ kind: "not_found" });
    expect(await actions(storage)).toContain("user.deleted");
  });
});

describe("users", () => {
  test("names are unique, passwords at least 12 characters, members need existing tenants, admins none", async () => {
    const { users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "member", tenants: ["beta", "acme"] }, "t");
    const refused = (u: Parameters<Users["create"]>[0]) =>
      users.create(u, "t").then(
        () => "created",
        (e) => `${e.kind} ${e.errors?.[0]?.field ?? ""}`.trim(),
      );
    expect(await refused({ username: "ANN", password: PASSWORD, role: "admin" })).toBe("conflict");
    expect(await refused({ username: "bo", password: "elevenchars", role: "admin" })).toBe("invalid_input /password");
    expect(await refused({ username: "bo", password: PASSWORD, role: "member", tenants: ["nope"] })).toBe(
      "invalid_input /tenants",
    );
    expect(await refused({ username: "bo", password: PASSWORD, role: "member" })).toBe("invalid_input /tenants");
    expect(await refused({ username: "bo", password: PASSWORD, role: "admin", tenants: ["beta"] })).toBe(
      "invalid_input /tenants",
    );
    expect(await refused({ username: "b o", password: PASSWORD, role: "admin" })).toBe("invalid_input /username");
    expect(await refused({ username: "x".repeat(65), password: PASSWORD, role: "admin" })).toBe(
      "invalid_input /username",
    );
    expect(await refused({ username: "bo", password: PASSWORD, role: "root" as "admin" })).toBe("invalid_input /role");
    expect((await users.list({ limit: 10 })).map((u) => u.username)).toEqual(["ann"]);
  });

  test("a role or tenant change applies to live sessions at their next request", async () => {
    const { users } = await setup();
    await users.create({ username: "ann", password: PASSWORD, role: "member", tenants: ["beta"] }, "t");
    const { token } = signedIn(await users.signIn("ann", PASSWORD, "10.0.0.7"));
    await users.update("ann", { tenants: ["acme"] }, "t");
    expect((await users.session(token))?.user.tenants).toEqual(["acme"]);
    await users.update("ann", { role: "admin" }, "t");
    expect((await users.session(token))?.user).toMatchObject({ role: "admin", tenants: [] });
    await expect(users.update("ann", { role: "member" }, "t")).rejects.toMatchObject({ kind: "invalid_input" });
  });

  test("principalOf: an admin gets the admin scope, a member write on each of its tenants", async () => {
    const { users } = await setup();
    const admin = await users.create({ username: "root", password: PASSWORD, role: "admin" }, "t");
    const member = await users.create(
      { username: "ann", password: PASSWORD, role: "member", tenants: ["beta", "acme"] },
      "t",
    );
    expect(users.principalOf(admin)).toEqual({ tokenId: admin.id, name: "user:root", scopes: ["admin"] });
    expect(users.principalOf(member)).toEqual({
      tokenId: member.id,
      name: "user:ann",
      scopes: ["tenant:beta:write", "tenant:acme:write"],
    });
  });
});

describe("the first admin", () => {
  test("is created with the bootstrap token only, and only while there is no user", async () => {
    const { storage, users } = await setup();
    await expect(users.createFirstAdmin("bootstrap-wrong-0123456789abc", "root", PASSWORD)).rejects.toMatchObject({
      kind: "forbidden",
    });
    await expect(users.createFirstAdmin("", "root", PASSWORD)).rejects.toMatchObject({ kind: "forbidden" });
    expect(await users.count()).toBe(0);
    const root = await users.createFirstAdmin(BOOT, "root", PASSWORD);
    expect(root).toMatchObject({ username: "root", role: "admin", tenants: [] });
    await expect(users.createFirstAdmin(BOOT, "other", PASSWORD)).rejects.toMatchObject({ kind: "conflict" });
    expect(await users.count()).toBe(1);
    expect((await storage.audit.list({ action: "user.created", limit: 10 }))[0]).toMatchObject({
      actor: "bootstrap_token",
      target: "user:root",
    });
  });

  test("two at once make one", async () => {
    const { users } = await setup();
    const results = await Promise.allSettled([
      users.createFirstAdmin(BOOT, "one", PASSWORD),
      users.createFirstAdmin(BOOT, "two", PASSWORD),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    expect(await users.count()).toBe(1);
  });

  test("without a configured bootstrap token nothing is accepted", async () => {
    const { users } = await setup({ bootstrapToken: null });
    await expect(users.createFirstAdmin(BOOT, "root", PASSWORD)).rejects.toMatchObject({ kind: "forbidden" });
  });
});
