import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApp } from "../../src/app/app.ts";
import { loadConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/core/log.ts";
import { loadMasterKey } from "../../src/vault/crypto.ts";
import { runAgentowl } from "../helpers/process.ts";

setDefaultTimeout(30_000);
const root = mkdtempSync(join(tmpdir(), "agentowl-first-admin-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("agentowl init prints a first admin token once, and it works against the server", async () => {
  const env = { AGENTOWL_DATA_DIR: join(root, "data") };
  const first = await runAgentowl(["init"], { cwd: root, env });
  expect(first.code).toBe(0);
  const token = /\b(aow_[A-Za-z0-9_-]{43})\b/.exec(first.stdout)?.[1];
  expect(token).toBeDefined();
  // The vault master key it wrote is one the vault can load (32 bytes, base64, 0600).
  expect(loadMasterKey(join(root, "data", "master.key")).id).toMatch(/^[0-9a-f]{16}$/);
  const second = await runAgentowl(["init"], { cwd: root, env });
  expect(second.code).toBe(0);
  expect(second.stdout).not.toContain("aow_");

  const app = await startApp({
    config: loadConfig({
      env: { ...env, AGENTOWL_HTTP_LISTEN: "127.0.0.1:0", AGENTOWL_SMTP_LISTEN: "127.0.0.1:0" },
      cwd: root,
    }),
    log: silentLogger,
  });
  try {
    const ok = await fetch(`${app.url}/v1/tokens`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { items: { name: string; scopes: string[] }[] }).items).toMatchObject([
      { name: "initial-admin", scopes: ["admin"] },
    ]);
  } finally {
    await app.stop();
  }
});

test("with AGENTOWL_BOOTSTRAP_TOKEN set, init stores that one and prints none", async () => {
  const env = { AGENTOWL_DATA_DIR: join(root, "boot"), AGENTOWL_BOOTSTRAP_TOKEN: "bootstrap-0123456789abcdefghij" };
  const r = await runAgentowl(["init"], { cwd: root, env });
  expect(r.code).toBe(0);
  expect(r.stdout).not.toContain("aow_");
  expect(r.stdout).not.toContain(env.AGENTOWL_BOOTSTRAP_TOKEN);
  expect(r.stdout).toContain("AGENTOWL_BOOTSTRAP_TOKEN");
});
