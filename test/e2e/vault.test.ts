import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { loadConfig } from "../../src/config/index.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import { CREDENTIAL_NAME, generateMasterKey, loadMasterKey } from "../../src/vault/crypto.ts";
import { apiCaller } from "../helpers/api.ts";
import { SmtpDialogue } from "../helpers/smtp.ts";
import { runAgentowl } from "../helpers/process.ts";
import { sqliteOf, until } from "../helpers/storage.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-vault-8a6c4e2f0b1d3f5a7c9e";
const SECRET = "whsec_vault-e2e-3141592653589793";
const ROTATED = "whsec_vault-e2e-2718281828459045";
const CLI_SECRET = "cli-secret-value-1618033988749894";
const root = mkdtempSync(join(tmpdir(), "agentowl-vault-e2e-"));
const logLines: string[] = [];
let app: App;
const call = apiCaller(() => app.url, BOOTSTRAP);

beforeAll(async () => {
  const config = loopbackConfig(root, BOOTSTRAP);
  const redactor = new Redactor();
  app = await startApp({
    config,
    redactor,
    log: createLogger({ level: "debug", redactor, sink: (l) => logLines.push(l) }),
  });
  for (const name of ["alpha", "beta"]) await call("POST", "/v1/tenants", { body: { name } });
});
afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("the vault over the API", () => {
  test("a secret is set and rotated through /v1, and only its metadata ever comes back", async () => {
    const set = await call("PUT", "/v1/tenants/beta/secrets/crm-signing", {
      body: { value: SECRET, rotation_period: "90d" },
    });
    expect(set.status, set.text).toBe(201);
    expect(set.body).toMatchObject({ tenant: "beta", name: "crm-signing", version: 1 });
    expect(set.body.rotation_due_at).not.toBeNull();
    expect((await call("PUT", "/v1/tenants/beta/secrets/crm-signing", { body: { value: SECRET } })).status).toBe(409);
    const rotated = await call("POST", "/v1/tenants/beta/secrets/crm-signing/rotate", {
      body: { value: ROTATED, grace: "1h" },
    });
    expect(rotated.body.version).toBe(2);
    expect(rotated.body.versions[1].valid_until).not.toBeNull();
    const list = await call("GET", "/v1/tenants/beta/secrets");
    const one = await call("GET", "/v1/tenants/beta/secrets/crm-signing");
    for (const r of [set, rotated, list, one]) {
      expect(r.text).not.toContain(SECRET);
      expect(r.text).not.toContain(ROTATED);
    }
    expect(list.body.items.map((s: { name: string }) => s.name)).toEqual(["crm-signing"]);
  });

  test("tenants are kept apart: another tenant's secrets are 404, a reader cannot write, an unknown tenant has none", async () => {
    const alphaWrite = (await call("POST", "/v1/tokens", { body: { name: "a", scopes: ["tenant:alpha:write"] } })).body
      .token;
    const betaRead = (await call("POST", "/v1/tokens", { body: { name: "b", scopes: ["tenant:beta:read"] } })).body
      .token;
    expect((await call("GET", "/v1/tenants/beta/secrets", { token: alphaWrite })).status).toBe(404);
    expect(
      (await call("PUT", "/v1/tenants/beta/secrets/x-key", { token: alphaWrite, body: { value: "abcdefgh" } })).status,
    ).toBe(404);
    expect(
      (await call("PUT", "/v1/tenants/beta/secrets/x-key", { token: betaRead, body: { value: "abcdefgh" } })).status,
    ).toBe(403);
    expect((await call("GET", "/v1/tenants/beta/secrets", { token: betaRead })).status).toBe(200);
    expect((await call("GET", "/v1/tenants/nope/secrets")).status).toBe(404);
    await expect(app.vault.lease("beta/crm-signing", { forTenant: "alpha", consumer: "test" })).rejects.toThrow(
      "may not lease",
    );
  });

  test("a lease hands the current value and the one still in grace, once", async () => {
    const lease = await app.vault.lease("beta/crm-signing", { forTenant: "beta", consumer: "delivery:test" });
    expect(app.vault.redeem(lease.id)).toEqual([ROTATED, SECRET]);
    expect(() => app.vault.redeem(lease.id)).toThrow();
  });

  test("the values never reach the logs, whatever carries them", async () => {
    createLogger({ level: "info", redactor: app.redactor, sink: (l) => logLines.push(l) }).info(
      `leak ${SECRET} ${ROTATED}`,
    );
    const all = logLines.join("\n");
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(ROTATED);
  });
});

describe("agentowl vault", () => {
  const env = () => ({ AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root });

  test("set reads the value from stdin, ls shows names and versions, and no output shows a value", async () => {
    const set = await runAgentowl(["vault", "set", "alpha/github"], {
      cwd: root,
      env: env(),
      stdin: `${CLI_SECRET}\n`,
    });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain("alpha/github: stored as version 1");
    const rotate = await runAgentowl(["vault", "rotate", "alpha/github", "--grace", "10m"], {
      cwd: root,
      env: env(),
      stdin: `${CLI_SECRET}-next\n`,
    });
    expect(rotate.code, rotate.stderr).toBe(0);
    const ls = await runAgentowl(["vault", "ls", "-t", "alpha"], { cwd: root, env: env() });
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/github\s+2/);
    for (const r of [set, rotate, ls]) expect(r.stdout + r.stderr).not.toContain(CLI_SECRET);
    const lease = await app.vault.lease("alpha/github", { forTenant: "alpha", consumer: "test" });
    expect(app.vault.redeem(lease.id)).toEqual([`${CLI_SECRET}-next`, CLI_SECRET]);
  });

  test("no value on stdin, or a secret that exists, is a clear refusal", async () => {
    expect((await runAgentowl(["vault", "set", "alpha/empty"], { cwd: root, env: env(), stdin: "" })).code).toBe(2);
    expect(
      (await runAgentowl(["vault", "set", "alpha/github"], { cwd: root, env: env(), stdin: "another-value\n" })).code,
    ).toBe(4);
    expect((await runAgentowl(["vault", "set"], { cwd: root, env: env(), stdin: "x" })).code).toBe(2);
  });
});

describe("rotation reminders", () => {
  test("at start, a secret past its rotation period is named in the log and on the outbox", async () => {
    const dir = join(root, "reminders");
    const env = { AGENTOWL_DATA_DIR: dir, AGENTOWL_HTTP_LISTEN: "127.0.0.1:0", AGENTOWL_SMTP_LISTEN: "127.0.0.1:0" };
    const first = await startApp({
      config: loadConfig({ env, cwd: root }),
      log: createLogger({ level: "error", redactor: new Redactor(), sink: () => {} }),
    });
    await first.vault.set("beta/short-lived", "short-lived-secret-value", { actor: "test", rotationPeriodMs: 1 });
    await first.stop();
    const lines: string[] = [];
    const second = await startApp({
      config: loadConfig({ env, cwd: root }),
      log: createLogger({ level: "info", redactor: new Redactor(), sink: (l) => lines.push(l) }),
    });
    try {
      await until("the reminder", () => lines.some((l) => l.includes("secret rotation overdue")));
      expect(JSON.parse(lines.find((l) => l.includes("secret rotation overdue"))!)).toMatchObject({
        level: "warn",
        tenant: "beta",
        scope: "beta/short-lived",
        version: 1,
      });
      // The log line comes just before the outbox entry commits.
      await until("the outbox entry", async () =>
        (await second.storage.outbox.read(0, 100)).some((e) => e.topic === "secret.rotation_due"),
      );
      const events = await second.storage.outbox.read(0, 100);
      expect(events.find((e) => e.topic === "secret.rotation_due")).toMatchObject({
        tenant: "beta",
        payload: { name: "short-lived", overdue: true },
      });
    } finally {
      await second.stop();
    }
  });
});

describe("agentowl vault rotate-master", () => {
  test("re-wraps every secret under a new key while serving; admin only", async () => {
    const env = { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root };
    const before = app.vault.masterKeyId;
    const reader = (await call("POST", "/v1/tokens", { body: { name: "r", scopes: ["tenant:beta:write"] } })).body
      .token;
    expect((await call("POST", "/v1/vault/rotate-master", { token: reader, body: {} })).status).toBe(403);
    const r = await runAgentowl(["vault", "rotate-master"], { cwd: root, env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/master key rotated: \d+ data key\(s\) re-wrapped/);
    expect(app.vault.masterKeyId).not.toBe(before);
    const lease = await app.vault.lease("beta/crm-signing", { forTenant: "beta", consumer: "test" });
    expect(app.vault.redeem(lease.id)).toContain(ROTATED);
    expect((await call("GET", "/v1/audit/verify")).body.ok).toBe(true);
  });
});

describe("no secret in plaintext anywhere", () => {
  test("after the traffic above, no value is in the log, the database file, the WAL, the spool or any file of the data dir", async () => {
    // The values the tests above set, rotated, leased and applied, through the running server.
    const planted = [SECRET, ROTATED, CLI_SECRET, `${CLI_SECRET}-next`, "short-lived-secret-value"];
    // Mail through the SMTP pipeline too, so that the spool and the blob store hold something.
    expect(
      (await call("POST", "/v1/tenants/beta/bindings", { body: { name: "mail", type: "email", addresses: ["ops"] } }))
        .status,
    ).toBe(201);
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO vault-test");
    const sent = await smtp.sendMail(
      "ops@example.com",
      ["ops@beta.agentowl.lan"],
      "Subject: rotate crm-signing\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
        "Content-Type: text/plain\r\n\r\nplease rotate\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
        "Content-Disposition: attachment; filename=notes.bin\r\n\r\nnotes\r\n--b--\r\n",
    );
    smtp.close();
    const queued = /queued as (msg_\w+)/.exec(sent.end!.raw)![1]!;
    await until("the mail processed", () => sqliteOf(app).mail.get(queued)?.state === "processed");
    // Every file under the test root: both data dirs (the reminders test has its own), WAL,
    // spool segments and attachment blobs included.
    const files = [...new Bun.Glob("**/*").scanSync({ cwd: root, onlyFiles: true })];
    expect(files.some((f) => f.endsWith("agentowl.db-wal"))).toBe(true);
    expect(files.some((f) => /spool\/[^/]+\.spool$/.test(f))).toBe(true);
    expect(files.some((f) => /blobs\/sha256\//.test(f))).toBe(true);
    let scanned = 0;
    for (const f of files) {
      const bytes = await Bun.file(join(root, f)).bytes();
      for (const v of planted) expect(Buffer.from(bytes).includes(Buffer.from(v)), `${v} in ${f}`).toBe(false);
      scanned++;
    }
    expect(scanned).toBeGreaterThanOrEqual(3);
    for (const v of planted) expect(logLines.join("\n")).not.toContain(v);
  });
});

describe("the master key as a systemd credential", () => {
  test("when the service is given one, the vault uses it and rotate-master says where to rotate it", async () => {
    const credDir = join(root, "credentials");
    await Bun.write(join(credDir, CREDENTIAL_NAME), `${generateMasterKey().key.toString("base64")}\n`);
    chmodSync(join(credDir, CREDENTIAL_NAME), 0o400);
    const expected = loadMasterKey(join(credDir, CREDENTIAL_NAME)).id;
    process.env.CREDENTIALS_DIRECTORY = credDir;
    let other: App | null = null;
    try {
      other = await startApp({
        config: loadConfig({
          env: {
            AGENTOWL_DATA_DIR: join(root, "cred-data"),
            AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
            AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
          },
          cwd: root,
        }),
        log: createLogger({ level: "error", redactor: new Redactor(), sink: () => {} }),
      });
      expect(other.vault.masterKeyId).toBe(expected);
      await expect(other.vault.rotateMaster({ actor: "test" })).rejects.toThrow("systemd credential");
      expect(existsSync(join(root, "cred-data", "master.key"))).toBe(false);
    } finally {
      delete process.env.CREDENTIALS_DIRECTORY;
      await other?.stop();
    }
  });
});
