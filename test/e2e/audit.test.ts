import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { runAgentowl } from "../helpers/process.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-audit-5c1e9a7b3d2f4e6a8c0b";
const root = mkdtempSync(join(tmpdir(), "agentowl-audit-"));
let app: App;

const call = apiCaller(() => app.url, BOOTSTRAP);

/** A second connection to the database file, as an operator with sqlite3 (or an attacker) would have. */
const sideDoor = () => new Database(join(root, "data", "agentowl.db"));

beforeAll(async () => {
  const config = loadConfig({ env: { AGENTOWL_DATA_DIR: join(root, "data"), AGENTOWL_HTTP_LISTEN: "127.0.0.1:0", AGENTOWL_SMTP_LISTEN: "127.0.0.1:0", AGENTOWL_BOOTSTRAP_TOKEN: BOOTSTRAP }, cwd: root });
  app = await startApp({ config, log: silentLogger });
});
afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("the audit log records every control-plane write", () => {
  test("token, resource and apply changes each leave an entry naming who, what and on what", async () => {
    const created = await call("POST", "/v1/tokens", { body: { name: "ops", scopes: ["tenant:beta:write"] } });
    await call("DELETE", `/v1/tokens/${created.body.id}`);
    await call("POST", "/v1/tenants", { body: { name: "beta" } });
    await call("POST", "/v1/tenants/beta/endpoints", { body: { name: "crm", url: "http://10.0.0.5/" } });
    await call("PATCH", "/v1/tenants/beta/endpoints/crm", { body: { timeout: "5s" } });
    await call("POST", "/v1/tenants/beta/policies", { body: { name: "guard", rules: [{ when: { channel: "email" }, effect: "allow" }] } });
    await call("DELETE", "/v1/tenants/beta/endpoints/crm");
    await call("PUT", "/v1/tenants/beta/secrets/crm-signing", { body: { value: "crm-signing-secret-value" } });
    await call("PUT", "/v1/tenants/beta/secrets/github", { body: { value: "github-webhook-secret" } });
    const yaml = await Bun.file(join(import.meta.dir, "../../examples/agentowl.yaml")).text();
    await fetch(`${app.url}/v1/config/apply`, { method: "POST", headers: { authorization: `Bearer ${BOOTSTRAP}`, "content-type": "application/yaml" }, body: yaml });

    const list = await call("GET", "/v1/audit?limit=500");
    const entries = [...list.body.items].reverse();
    const seen = entries.map((e: { action: string; target: string | null }) => `${e.action} ${e.target ?? ""}`.trim());
    // The first entry is the bootstrap token's own creation at start-up.
    expect(entries[0]).toMatchObject({ seq: 1, actor: "AGENTOWL_BOOTSTRAP_TOKEN", action: "token.create", details: { name: "bootstrap", scopes: ["admin"] } });
    expect(seen.slice(1, 12)).toEqual([
      expect.stringMatching(/^token\.create tok_/),
      expect.stringMatching(/^token\.revoke tok_/),
      "resource.create beta/tenants/beta",
      "resource.create beta/endpoints/crm",
      "resource.update beta/endpoints/crm",
      "resource.create beta/policies/guard",
      "resource.delete beta/endpoints/crm",
      "secret.set beta/crm-signing",
      "secret.set beta/github",
      "config.apply",
    ]);
    const bootstrapId = (await call("GET", "/v1/version")).body.token.id;
    expect(entries.slice(1).every((e: { actor: string }) => e.actor === `token:${bootstrapId}`)).toBe(true);
    expect(entries[1].details).toEqual({ name: "ops", scopes: ["tenant:beta:write"], expires_at: null });
    expect(entries.at(-1).details.created).toBeGreaterThan(0);
    // The token's value is never in the log.
    expect(list.text).not.toContain(created.body.token);
  });

  test("a tenant token sees only its tenants' entries; verify is for admins", async () => {
    const reader = (await call("POST", "/v1/tokens", { body: { name: "r", scopes: ["tenant:beta:read"] } })).body.token;
    const mine = await call("GET", "/v1/audit?limit=500", { token: reader });
    expect(mine.body.items.length).toBeGreaterThan(0);
    expect(mine.body.items.every((e: { tenant: string }) => e.tenant === "beta")).toBe(true);
    expect((await call("GET", "/v1/audit?tenant=other", { token: reader })).status).toBe(404);
    expect((await call("GET", "/v1/audit/verify", { token: reader })).status).toBe(403);
  });

  test("pages walk the whole log, newest first", async () => {
    const seqs: number[] = [];
    let cursor: string | null = null;
    do {
      const r: Awaited<ReturnType<typeof call>> = await call("GET", `/v1/audit?limit=3${cursor ? `&cursor=${cursor}` : ""}`);
      seqs.push(...r.body.items.map((e: { seq: number }) => e.seq));
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seqs.at(-1)).toBe(1);
  });
});

describe("audit first", () => {
  test("when the audit entry cannot be written, the write does not happen", async () => {
    const db = sideDoor();
    db.run("CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END");
    try {
      const tokensBefore = db.query<{ n: number }, []>("SELECT count(*) AS n FROM tokens").get()!.n;
      const t = await call("POST", "/v1/tokens", { body: { name: "blocked", scopes: ["admin"] } });
      expect(t.status).toBeGreaterThanOrEqual(500);
      expect(t.text).not.toContain("aow_");
      expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM tokens").get()!.n).toBe(tokensBefore);
      const before = await call("GET", "/v1/tenants/beta/policies/guard");
      const put = await call("PUT", "/v1/tenants/beta/policies/guard", { body: { rules: [{ when: { channel: "sms" }, effect: "deny" }] } });
      expect(put.status).toBeGreaterThanOrEqual(500);
      expect((await call("GET", "/v1/tenants/beta/policies/guard")).body).toEqual(before.body);
    } finally {
      db.run("DROP TRIGGER audit_down");
      db.close();
    }
    expect((await call("PUT", "/v1/tenants/beta/policies/guard", { body: { rules: [{ when: { channel: "sms" }, effect: "deny" }] } })).status).toBe(200);
  });
});

describe("verify", () => {
  test("an intact log verifies, through the API and the CLI", async () => {
    const r = await call("GET", "/v1/audit/verify");
    expect(r.body).toMatchObject({ ok: true, first_broken: null });
    expect(r.body.entries).toBeGreaterThan(8);
    const cli = await runAgentowl(["audit", "verify"], { cwd: root, env: { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root } });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`intact: ${r.body.entries} entries`);
  });

  test("a row edited directly in the database file is caught, and the first broken link named", async () => {
    const db = sideDoor();
    db.run("DROP TRIGGER audit_log_no_update");
    // Entry 2 records a tenant-scoped token; make it look as if an admin token had been made.
    db.run(`UPDATE audit_log SET details = replace(details, '"tenant:beta:write"', '"admin"') WHERE seq = 2`);
    expect(db.query<{ d: string }, []>("SELECT details AS d FROM audit_log WHERE seq = 2").get()!.d).toContain('"admin"');
    db.close();
    const r = await call("GET", "/v1/audit/verify");
    expect(r.body).toMatchObject({ ok: false, entries: 1, first_broken: { seq: 2 } });
    const cli = await runAgentowl(["audit", "verify"], { cwd: root, env: { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root } });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain("BROKEN at entry 2");
  });
});
