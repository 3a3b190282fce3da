import { Database } from "bun:sqlite";
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { type ChainedEntry, entryHash } from "../../src/store/audit-chain.ts";
import { silentLogger } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { killLeftovers, runAgentowl, serveAgentowl } from "../helpers/process.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-audit-5c1e9a7b3d2f4e6a8c0b";
const root = mkdtempSync(join(tmpdir(), "agentowl-audit-"));
let app: App;

const call = apiCaller(() => app.url, BOOTSTRAP);

/** A second connection to the database file, as an operator with sqlite3 (or an attacker) would have. */
const sideDoor = () => new Database(join(root, "data", "agentowl.db"));

beforeAll(async () => {
  const config = loopbackConfig(root, BOOTSTRAP);
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
    await call("POST", "/v1/tenants/beta/policies", {
      body: { name: "guard", rules: [{ when: { channel: "email" }, effect: "allow" }] },
    });
    await call("DELETE", "/v1/tenants/beta/endpoints/crm");
    await call("PUT", "/v1/tenants/beta/secrets/crm-signing", {
      body: { value: `whsec_${Buffer.from("crm-signing-secret-value-32bytes").toString("base64")}` },
    });
    await call("PUT", "/v1/tenants/beta/secrets/github", { body: { value: "github-webhook-secret" } });
    const yaml = await Bun.file(join(import.meta.dir, "../../examples/agentowl.yaml")).text();
    await fetch(`${app.url}/v1/config/apply`, {
      method: "POST",
      headers: { authorization: `Bearer ${BOOTSTRAP}`, "content-type": "application/yaml" },
      body: yaml,
    });

    const list = await call("GET", "/v1/audit?limit=500");
    const entries = [...list.body.items].reverse();
    const seen = entries.map((e: { action: string; target: string | null }) => `${e.action} ${e.target ?? ""}`.trim());
    // The first entry is the bootstrap token's own creation at start-up.
    expect(entries[0]).toMatchObject({
      seq: 1,
      actor: "AGENTOWL_BOOTSTRAP_TOKEN",
      action: "token.create",
      details: { name: "bootstrap", scopes: ["admin"] },
    });
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
    // The token's name beside its id, so a person reads who it was.
    expect(entries.slice(1).every((e: { actor_name: string | null }) => e.actor_name === "bootstrap")).toBe(true);
    expect(entries[0].actor_name).toBeNull();
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
      const r: Awaited<ReturnType<typeof call>> = await call(
        "GET",
        `/v1/audit?limit=3${cursor ? `&cursor=${cursor}` : ""}`,
      );
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
      const put = await call("PUT", "/v1/tenants/beta/policies/guard", {
        body: { rules: [{ when: { channel: "sms" }, effect: "deny" }] },
      });
      expect(put.status).toBeGreaterThanOrEqual(500);
      expect((await call("GET", "/v1/tenants/beta/policies/guard")).body).toEqual(before.body);
    } finally {
      db.run("DROP TRIGGER audit_down");
      db.close();
    }
    expect(
      (
        await call("PUT", "/v1/tenants/beta/policies/guard", {
          body: { rules: [{ when: { channel: "sms" }, effect: "deny" }] },
        })
      ).status,
    ).toBe(200);
  });
});

describe("verify", () => {
  test("an intact log verifies, through the API and the CLI", async () => {
    const r = await call("GET", "/v1/audit/verify");
    expect(r.body).toMatchObject({ ok: true, first_broken: null });
    expect(r.body.entries).toBeGreaterThan(8);
    const cli = await runAgentowl(["audit", "verify"], {
      cwd: root,
      env: { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root },
    });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`intact: ${r.body.entries} entries`);
  });

  test("a row edited directly in the database file is caught, and the first broken link named", async () => {
    const db = sideDoor();
    db.run("DROP TRIGGER audit_log_no_update");
    // Entry 2 records a tenant-scoped token; make it look as if an admin token had been made.
    db.run(`UPDATE audit_log SET details = replace(details, '"tenant:beta:write"', '"admin"') WHERE seq = 2`);
    expect(db.query<{ d: string }, []>("SELECT details AS d FROM audit_log WHERE seq = 2").get()!.d).toContain(
      '"admin"',
    );
    db.close();
    const r = await call("GET", "/v1/audit/verify");
    expect(r.body).toMatchObject({ ok: false, entries: 1, first_broken: { seq: 2 } });
    const cli = await runAgentowl(["audit", "verify"], {
      cwd: root,
      env: { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root },
    });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain("BROKEN at entry 2");
  });
});

/**
 * guarantee 10 (docs/guarantees.md) with the real server process: the chain's head is anchored outside the table, in
 * signed checkpoints (a file in the data dir) and in the log, and a SIGKILL never leaves a
 * checkpoint ahead of what was committed.
 */
describe("the chain cannot be shortened unseen", () => {
  const TOKEN = "bootstrap-audit-anchor-7e2c4a6b8d0f1e3a";
  afterEach(killLeftovers);
  const serve = (dataDir: string, env: Record<string, string> = {}) =>
    serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: { AGENTOWL_AUDIT_CHECKPOINT_ENTRIES: "3", ...env } });
  const cli = (url: string, args: string[]) =>
    runAgentowl(["audit", "verify", ...args], {
      cwd: root,
      env: { AGENTOWL_URL: url, AGENTOWL_TOKEN: TOKEN, HOME: root },
    });
  const createTokens = (url: string, n: number, from = 0) =>
    Array.from({ length: n }, (_, i) =>
      fetch(`${url}/v1/tokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name: `t${from + i}`, scopes: ["tenant:beta:read"] }),
      }).then(
        (r) => r.status,
        () => 0,
      ),
    );
  const checkpointsLogged = (server: { logs: Record<string, unknown>[] }) =>
    server.logs.filter((l) => l.msg === "audit checkpoint") as { entries: number; head: string }[];

  test("a SIGKILL right after writes leaves a chain that verifies, its checkpoint never ahead of the table", async () => {
    const dataDir = join(root, "killed");
    for (let round = 0; round < 3; round++) {
      const { server, url } = await serve(dataDir);
      const statuses = createTokens(url, 60, round * 60);
      await server.waitFor(
        "a checkpoint logged under load",
        () => checkpointsLogged(server).some((c) => c.entries > round * 60 + 6),
        20_000,
      );
      server.proc.kill("SIGKILL");
      await server.exited;
      await Promise.all(statuses);
      const again = await serve(dataDir);
      const r = await apiCaller(() => again.url, TOKEN)("GET", "/v1/audit/verify");
      expect(r.body).toMatchObject({ ok: true, problem: null, keyed: true });
      expect(r.body.checkpoint.seq).toBeLessThanOrEqual(r.body.entries);
      expect(again.server.logs.some((l) => l.msg === "audit chain not anchored")).toBe(false);
      again.server.proc.kill("SIGTERM");
      expect(await again.server.exit(15_000)).toBe(0);
    }
  });

  test("deleted rows are reported missing against the checkpoint; a head kept from the log catches what the file no longer shows", async () => {
    const dataDir = join(root, "truncated");
    const first = await serve(dataDir);
    expect((await Promise.all(createTokens(first.url, 20))).every((s) => s === 201)).toBe(true);
    first.server.proc.kill("SIGTERM");
    expect(await first.server.exit(15_000)).toBe(0);
    // The last checkpoint, as an operator finds it in the logs (written at the clean shutdown).
    const logged = checkpointsLogged(first.server).at(-1)!;
    expect(logged.entries).toBe(21);

    const db = new Database(join(dataDir, "agentowl.db"));
    db.run("DROP TRIGGER audit_log_no_delete");
    const good = db.query<{ hash: string }, []>("SELECT hash FROM audit_log WHERE seq = 18").get()!.hash;
    db.run("DELETE FROM audit_log WHERE seq > 18");
    db.close();
    let { server, url } = await serve(dataDir);
    const r = await cli(url, []);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("BROKEN at entry 19");
    expect(r.stderr).toContain("3 entries are missing");
    expect(r.stderr).toContain(`last good entry: 18, hash ${good}`);
    server.proc.kill("SIGTERM");
    await server.exit(15_000);

    // Cut the checkpoint file back to its first line too: the table and the file agree again,
    // but the head the operator kept from the log does not.
    const file = join(dataDir, "audit", "checkpoints.jsonl");
    writeFileSync(file, `${readFileSync(file, "utf8").split("\n")[0]}\n`);
    ({ server, url } = await serve(dataDir));
    expect((await cli(url, [])).code).toBe(0);
    const kept = await cli(url, ["--expect-head", `${logged.entries}:${logged.head}`]);
    expect(kept.code).toBe(1);
    expect(kept.stderr).toContain("3 entries are missing");
    expect(kept.stderr).toContain(`last good entry: 18, hash ${good}`);
    const api = await apiCaller(() => url, TOKEN)("GET", `/v1/audit/verify?expect_head=${logged.head}`);
    expect(api.body).toMatchObject({ ok: false, expect_head: { found: false } });
    expect((await apiCaller(() => url, TOKEN)("GET", "/v1/audit/verify?expect_head=nothex")).status).toBe(400);
  });

  test("an entry rewritten with every later hash recomputed is caught, naming the last good entry", async () => {
    const dataDir = join(root, "rewritten");
    const first = await serve(dataDir);
    expect((await Promise.all(createTokens(first.url, 10))).every((s) => s === 201)).toBe(true);
    first.server.proc.kill("SIGTERM");
    await first.server.exit(15_000);
    const db = new Database(join(dataDir, "agentowl.db"));
    db.run("DROP TRIGGER audit_log_no_update");
    const rows = db
      .query<Record<string, string | number | null>, []>("SELECT * FROM audit_log WHERE seq >= 5 ORDER BY seq")
      .all();
    let prev = db.query<{ hash: string }, []>("SELECT hash FROM audit_log WHERE seq = 4").get()!.hash;
    const good = prev;
    for (const r of rows) {
      const e = {
        ...(r as never as ChainedEntry),
        details: JSON.parse(r.details as string),
        target: r.seq === 5 ? "tok_forged" : (r.target as string),
      };
      const hash = entryHash(prev, e);
      db.run("UPDATE audit_log SET target = ?, prev_hash = ?, hash = ? WHERE seq = ?", [
        e.target,
        prev,
        hash,
        r.seq as number,
      ]);
      prev = hash;
    }
    db.close();
    const { url } = await serve(dataDir);
    const r = await cli(url, ["--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      first_broken: { seq: 5 },
      last_good: { seq: 4, hash: good },
    });
  });
});

describe("the data dir is private", () => {
  const mode = (path: string) => statSync(path).mode & 0o777;

  test("init and serve make an existing 0755 data dir 0700 and its 0644 database and key files 0600, and say so", async () => {
    const dataDir = join(root, "open");
    mkdirSync(dataDir, { mode: 0o755 });
    chmodSync(dataDir, 0o755);
    new Database(join(dataDir, "agentowl.db"), { create: true }).close();
    chmodSync(join(dataDir, "agentowl.db"), 0o644);
    const env = { AGENTOWL_DATA_DIR: dataDir, AGENTOWL_BOOTSTRAP_TOKEN: "bootstrap-private-3c5e7a9b1d2f4e6a" };
    const init = await runAgentowl(["init"], { cwd: root, env });
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`made private (others could read them): ${dataDir}, ${join(dataDir, "agentowl.db")}`);
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(join(dataDir, "agentowl.db"))).toBe(0o600);
    for (const f of ["master.key", "audit.key", "tls/key.pem", "audit/checkpoints.jsonl"])
      expect(mode(join(dataDir, f)), f).toBe(0o600);

    // Opened up again, as a careless copy or restore leaves it: serve closes it again at start.
    chmodSync(dataDir, 0o755);
    for (const f of ["agentowl.db", "master.key", "tls/key.pem", "spool"])
      chmodSync(join(dataDir, f), f === "spool" ? 0o755 : 0o644);
    const { server, url } = await serveAgentowl({ cwd: root, dataDir, token: env.AGENTOWL_BOOTSTRAP_TOKEN });
    const warned = await server.waitForLog("made files in the data dir private: others could read them");
    expect(warned.paths).toEqual(
      expect.arrayContaining([
        dataDir,
        join(dataDir, "agentowl.db"),
        join(dataDir, "master.key"),
        join(dataDir, "tls/key.pem"),
        join(dataDir, "spool"),
      ]),
    );
    expect(
      (await apiCaller(() => url, env.AGENTOWL_BOOTSTRAP_TOKEN)("POST", "/v1/tenants", { body: { name: "beta" } }))
        .status,
    ).toBe(201);
    for (const f of ["", "agentowl.db", "agentowl.db-wal", "agentowl.db-shm", "master.key", "tls/key.pem"])
      expect(mode(join(dataDir, f)) & 0o077, f || "data dir").toBe(0);
    server.proc.kill("SIGTERM");
    await server.exit(15_000);
  });
});
