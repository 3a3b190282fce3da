import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { Users } from "../../src/users/index.ts";
import { apiCaller } from "../helpers/api.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-users-5c1e9a7f3b2d8e4a6c0f";
const PASSWORD = "correct horse battery";
const root = mkdtempSync(join(tmpdir(), "agentowl-users-"));
let app: App;
let base: string;
const call = apiCaller(() => base, BOOTSTRAP);
/** Tokens that are not admins: a tenant's writer, a tenant's reader. */
let writer = "";
let reader = "";

beforeAll(async () => {
  app = await startApp({ config: loopbackConfig(root, BOOTSTRAP), log: silentLogger });
  base = app.url;
  for (const name of ["beta", "acme"]) expect((await call("POST", "/v1/tenants", { body: { name } })).status).toBe(201);
  const token = async (scopes: string[]) =>
    (await call("POST", "/v1/tokens", { body: { name: scopes.join(","), scopes } })).body.token as string;
  writer = await token(["tenant:beta:write"]);
  reader = await token(["tenant:beta:read"]);
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** No answer of /v1/users carries a password or anything that looks like its hash. */
function expectNoSecrets(text: string, ...passwords: string[]) {
  expect(text).not.toContain("argon2");
  expect(text).not.toContain("password_hash");
  expect(text).not.toContain("passwordHash");
  for (const p of passwords) expect(text).not.toContain(p);
}

describe("/v1/users", () => {
  test("an admin creates, reads and lists users; the password is never echoed and no hash is returned", async () => {
    const created = await call("POST", "/v1/users", {
      body: { username: "ann", password: PASSWORD, role: "member", tenants: ["beta"] },
    });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toMatchObject({ username: "ann", role: "member", tenants: ["beta"], locked_until: null });
    expect(created.body.id).toMatch(/^usr_/);
    expectNoSecrets(created.text, PASSWORD);
    for (const name of ["cy", "bo"]) {
      const r = await call("POST", "/v1/users", { body: { username: name, password: PASSWORD, role: "admin" } });
      expect(r.status).toBe(201);
    }

    const one = await call("GET", "/v1/users/ann");
    expect(one.status).toBe(200);
    expect(one.body).toEqual(created.body);
    expectNoSecrets(one.text, PASSWORD);

    const first = await call("GET", "/v1/users?limit=2");
    expect(first.body.items.map((u: { username: string }) => u.username)).toEqual(["ann", "bo"]);
    expect(first.body.next_cursor).toBeString();
    const second = await call("GET", `/v1/users?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.items.map((u: { username: string }) => u.username)).toEqual(["cy"]);
    expect(second.body.next_cursor).toBeNull();
    expectNoSecrets(first.text + second.text, PASSWORD);

    const audit = await call("GET", "/v1/audit?action=user.created");
    expect(audit.body.items).toHaveLength(3);
    expectNoSecrets(audit.text, PASSWORD);
  });

  test("a taken name is 409, a short password or an unknown tenant 422, an unknown user 404 (problem+json)", async () => {
    const problem = async (method: string, path: string, body?: unknown) => {
      const r = await call(method, path, { body });
      expect(r.headers.get("content-type")).toContain("application/problem+json");
      return r;
    };
    const body = { username: "dup", password: PASSWORD, role: "admin" };
    expect((await call("POST", "/v1/users", { body })).status).toBe(201);
    expect((await problem("POST", "/v1/users", body)).status).toBe(409);
    expect((await problem("POST", "/v1/users", { ...body, username: "dup-2", password: "short" })).status).toBe(422);
    const tenant = await problem("POST", "/v1/users", {
      ...body,
      username: "dup-3",
      role: "member",
      tenants: ["nope"],
    });
    expect(tenant.status).toBe(422);
    expect(tenant.body.errors).toEqual([{ field: "/tenants", message: "no such tenant: nope" }]);
    expect((await problem("GET", "/v1/users/nobody")).status).toBe(404);
    expect((await problem("PUT", "/v1/users/nobody/password", { password: PASSWORD })).status).toBe(404);
    expect((await problem("PATCH", "/v1/users/nobody", { role: "admin" })).status).toBe(404);
    expect((await problem("DELETE", "/v1/users/nobody")).status).toBe(404);
    expect((await problem("GET", `/v1/users/${"x".repeat(200)}`)).status).toBe(404);
    expect((await problem("PUT", "/v1/users/dup/password", { password: "short" })).status).toBe(422);
  });

  test("a new password ends the user's console sessions; PATCH changes role and tenants", async () => {
    expect(
      (
        await call("POST", "/v1/users", {
          body: { username: "eve", password: PASSWORD, role: "member", tenants: ["beta"] },
        })
      ).status,
    ).toBe(201);
    const users = new Users({ storage: app.storage });
    const a = await users.signIn("eve", PASSWORD, "127.0.0.1");
    const b = await users.signIn("eve", PASSWORD, "127.0.0.1");
    if (!a.ok || !b.ok) throw new Error("sign-in failed");
    expect(await users.session(a.token)).not.toBeNull();

    const changed = await call("PUT", "/v1/users/eve/password", { body: { password: "another passphrase" } });
    expect(changed.status).toBe(204);
    expect(changed.text).toBe("");
    expect(await users.session(a.token)).toBeNull();
    expect(await users.session(b.token)).toBeNull();
    expect((await users.signIn("eve", PASSWORD, "127.0.0.1")).ok).toBe(false);
    expect((await users.signIn("eve", "another passphrase", "127.0.0.1")).ok).toBe(true);

    const patched = await call("PATCH", "/v1/users/eve", { body: { tenants: ["beta", "acme"] } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body).toMatchObject({ role: "member", tenants: ["beta", "acme"] });
    const admin = await call("PATCH", "/v1/users/eve", { body: { role: "admin" } });
    expect(admin.body).toMatchObject({ role: "admin", tenants: [] });
    expectNoSecrets(patched.text + admin.text, PASSWORD, "another passphrase");
  });

  test("DELETE removes the user and ends their sessions", async () => {
    expect(
      (await call("POST", "/v1/users", { body: { username: "gus", password: PASSWORD, role: "admin" } })).status,
    ).toBe(201);
    const users = new Users({ storage: app.storage });
    const s = await users.signIn("gus", PASSWORD, "127.0.0.1");
    if (!s.ok) throw new Error("sign-in failed");
    expect((await call("DELETE", "/v1/users/gus")).status).toBe(204);
    expect((await call("GET", "/v1/users/gus")).status).toBe(404);
    expect(await users.session(s.token)).toBeNull();
    expect((await users.signIn("gus", PASSWORD, "127.0.0.1")).ok).toBe(false);
    const audit = await call("GET", "/v1/audit?action=user.deleted");
    expect(audit.body.items[0]).toMatchObject({ target: "user:gus" });
  });

  test("tenant tokens are refused (403, before the body is read); no token is 401", async () => {
    for (const token of [writer, reader]) {
      expect((await call("GET", "/v1/users", { token })).status).toBe(403);
      expect((await call("GET", "/v1/users/ann", { token })).status).toBe(403);
      const r = await call("POST", "/v1/users", {
        token,
        body: { username: "mallory", password: PASSWORD, role: "admin" },
      });
      expect(r.status).toBe(403);
      // A body that would not even validate is refused the same way.
      expect((await call("POST", "/v1/users", { token, raw: "{not json" })).status).toBe(403);
      expect((await call("PUT", "/v1/users/ann/password", { token, body: { password: PASSWORD } })).status).toBe(403);
      expect((await call("DELETE", "/v1/users/ann", { token })).status).toBe(403);
    }
    expect((await call("GET", "/v1/users", { token: null })).status).toBe(401);
    expect((await call("GET", "/v1/users/mallory")).status).toBe(404);
  });
});
