/**
 * `agentowl users add|ls|passwd|rm` as real processes against a real appliance, and the first
 * console user that `agentowl init` creates: stdout, one line on stderr, the exit code.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { openStorage } from "../../src/store/index.ts";
import { Users } from "../../src/users/index.ts";
import { apiCaller } from "../helpers/api.ts";
import { loopbackConfig } from "../helpers/app.ts";
import { type RunResult, runAgentowl } from "../helpers/process.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-cli-users-8d2f6a1c9e3b7d5f0a4c";
const PASSWORD = "correct horse battery";
const root = mkdtempSync(join(tmpdir(), "agentowl-cli-users-"));
const home = join(root, "home");
let app: App;
const call = apiCaller(() => app.url, BOOTSTRAP);

function agentowl(args: string[], opts: { stdin?: string; token?: string } = {}): Promise<RunResult> {
  return runAgentowl(args, {
    cwd: root,
    env: { HOME: home, XDG_CONFIG_HOME: "", AGENTOWL_URL: app.url, AGENTOWL_TOKEN: opts.token ?? BOOTSTRAP },
    stdin: opts.stdin,
  });
}

beforeAll(async () => {
  mkdirSync(home);
  app = await startApp({ config: loopbackConfig(root, BOOTSTRAP), log: silentLogger });
  expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("agentowl users", () => {
  test("add reads the password from stdin, ls lists without it, passwd changes it, rm deletes", async () => {
    const add = await agentowl(["users", "add", "ann", "--tenant", "beta"], { stdin: `${PASSWORD}\n` });
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toBe("created user ann (member of beta)\n");
    const admin = await agentowl(["users", "add", "root", "--role", "admin"], { stdin: PASSWORD });
    expect(admin.code, admin.stderr).toBe(0);

    const users = new Users({ storage: app.storage });
    // The trailing newline was the shell's, not part of the password.
    const session = await users.signIn("ann", PASSWORD, "127.0.0.1");
    expect(session.ok).toBe(true);

    const ls = await agentowl(["users", "ls"]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/^USERNAME\s+ROLE\s+TENANTS\s+CREATED\s+LOCKED UNTIL\n/);
    expect(ls.stdout).toMatch(/\nann\s+member\s+beta\s/);
    expect(ls.stdout).toMatch(/\nroot\s+admin\s+\(all\)\s/);
    const json = await agentowl(["users", "ls", "--json"]);
    expect(JSON.parse(json.stdout).map((u: { username: string }) => u.username)).toEqual(["ann", "root"]);
    for (const out of [ls.stdout, json.stdout, add.stdout]) {
      expect(out).not.toContain(PASSWORD);
      expect(out).not.toContain("argon2");
    }

    const passwd = await agentowl(["users", "passwd", "ann"], { stdin: "a new passphrase\n" });
    expect(passwd.code, passwd.stderr).toBe(0);
    expect(passwd.stdout).toBe("password of ann changed; their console sessions have ended\n");
    if (session.ok) expect(await users.session(session.token)).toBeNull();
    expect((await users.signIn("ann", "a new passphrase", "127.0.0.1")).ok).toBe(true);

    const rm = await agentowl(["users", "rm", "ann"]);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toBe("deleted user ann\n");
    expect((await call("GET", "/v1/users/ann")).status).toBe(404);
  });

  test("each mistake is one line on stderr with its exit code", async () => {
    const cases: [string[], string | undefined, number, RegExp][] = [
      [["users", "add", "bo", "--tenant", "beta"], "short\n", 2, /password must be at least 12 characters/],
      [["users", "add", "bo", "--tenant", "nope"], PASSWORD, 1, /no such tenant: nope/],
      [["users", "passwd", "dup"], "short", 2, /password must be at least 12 characters/],
      [["users", "add", "bo"], PASSWORD, 2, /a member needs --tenant/],
      [["users", "add", "bo", "--role", "root"], PASSWORD, 2, /--role takes one of admin, member/],
      [["users", "add", "bo", "--tenant", "beta"], undefined, 2, /no password on stdin/],
      [["users", "add"], PASSWORD, 2, /missing the username/],
      [["users", "passwd", "nobody"], PASSWORD, 3, /user nobody not found/],
      [["users", "rm", "nobody"], undefined, 3, /user nobody not found/],
    ];
    for (const [args, stdin, code, message] of cases) {
      const r = await agentowl(args, { stdin });
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(code);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain(PASSWORD);
    }
    expect((await agentowl(["users", "add", "dup", "--role", "admin"], { stdin: PASSWORD })).code).toBe(0);
    const taken = await agentowl(["users", "add", "dup", "--role", "admin"], { stdin: PASSWORD });
    expect(taken.code).toBe(4);
    expect(taken.stderr).toMatch(/user dup exists already/);
  });

  test("a tenant token may not manage users (exit 5)", async () => {
    const token = (await call("POST", "/v1/tokens", { body: { name: "w", scopes: ["tenant:beta:write"] } })).body
      .token as string;
    const r = await agentowl(["users", "ls"], { token });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/admin/);
  });
});

describe("agentowl init", () => {
  test("creates the console user admin once, with a 20-character password shown once that signs in", async () => {
    const env = { AGENTOWL_DATA_DIR: join(root, "init-data"), HOME: home };
    const first = await runAgentowl(["init"], { cwd: root, env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain("ok  console user admin (created; its password is below, shown once)");
    expect(first.stdout).toContain("Console sign-in (shown once; store it now, only its hash is kept)");
    const password = /\n {2}password {2}(\S+)\n/.exec(first.stdout)?.[1];
    expect(password).toMatch(/^[A-Za-z0-9]{20}$/);

    const second = await runAgentowl(["init"], { cwd: root, env });
    expect(second.code).toBe(0);
    expect(second.stdout).not.toContain("Console sign-in");
    expect(second.stdout).not.toContain(password!);

    const storage = openStorage({ dir: env.AGENTOWL_DATA_DIR });
    try {
      const users = new Users({ storage });
      expect(await users.count()).toBe(1);
      expect((await users.get("admin"))?.role).toBe("admin");
      expect((await users.signIn("admin", password!, "127.0.0.1")).ok).toBe(true);
      const created = await storage.audit.list({ action: "user.created", limit: 10 });
      expect(created).toHaveLength(1);
      expect(created[0]).toMatchObject({ actor: "agentowl init", target: "user:admin" });
      expect(JSON.stringify(created)).not.toContain(password!);
    } finally {
      await storage.close();
    }
  });
});
