/**
 * `agentowl agents …` as real processes against an appliance with a real pool (runtimes in their
 * sandbox where this machine has one): claim, ls, show, logs, sync after a template change, pool
 * and its resize, release; and the console's agents page: every runtime for an admin, only their
 * tenants' for a member.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { createUsers, signIn } from "../helpers/console.ts";
import { loopbackConfig } from "../helpers/app.ts";
import { type RunResult, runAgentowl } from "../helpers/process.ts";
import { until } from "../helpers/storage.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-cli-agents-3f5a7c9e1b2d4f6a";
const root = mkdtempSync(join(tmpdir(), "agentowl-cli-agents-"));
const work = join(root, "work");
let app: App;
const call = apiCaller(() => app.url, BOOTSTRAP);
const agentowl = (args: string[]): Promise<RunResult> =>
  runAgentowl(args, {
    cwd: work,
    env: { HOME: work, XDG_CONFIG_HOME: "", AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP },
  });
function ok(r: RunResult): string {
  expect(r.code, `stderr:\n${r.stderr}`).toBe(0);
  return r.stdout;
}
const template = (instructions: string) => ({
  name: "desk",
  instructions,
  model: { endpoint: "http://127.0.0.1:9/v1", default: "m" },
  tools: [{ id: "email", provisioning: "pool" }],
});

beforeAll(async () => {
  mkdirSync(work);
  app = await startApp({
    config: loopbackConfig(root, BOOTSTRAP, { AGENTOWL_AGENTS_MIN_IDLE: "1" }),
    log: silentLogger,
  });
  expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
  expect((await call("POST", "/v1/tenants/beta/templates", { body: template("Be brief.") })).status).toBe(201);
});
afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

test("claim, ls, show, logs, sync, pool and release, each one command", async () => {
  await until("a warm runtime", async () => (await app.agents.status()).byState.ready >= 1, 20_000);
  const claimed = JSON.parse(
    ok(await agentowl(["agents", "claim", "-t", "beta", "--template", "desk", "--agent", "desk", "--json"])),
  );
  expect(claimed).toMatchObject({ agent: "desk", tenant: "beta", cold: false, template_version: 1 });
  expect(claimed.addresses.email).toBe("desk@beta.agentowl.lan");
  const id = claimed.id as string;

  const ls = ok(await agentowl(["agents", "ls", "-t", "beta"]));
  expect(ls).toContain(id);
  expect(ls).toContain("desk@v1");
  expect(ls).toMatch(/claimed\s+beta\s+desk\s+desk@v1\s+(bwrap|sandbox-exec|process)/);
  expect(ok(await agentowl(["agents", "show", id]))).toContain("claimed");
  expect((await agentowl(["agents", "logs", id])).code).toBe(0);

  // A template change reaches the runtime only when synced; the runtime then says the new version.
  expect((await call("PUT", "/v1/tenants/beta/templates/desk", { body: template("Be briefer.") })).status).toBe(200);
  const synced = JSON.parse(ok(await agentowl(["agents", "sync", "-t", "beta", "--template", "desk", "--json"])));
  expect(JSON.stringify(synced)).toContain('"template_version":2');

  const pool = ok(await agentowl(["agents", "pool"]));
  expect(pool).toMatch(/isolation/);
  ok(await agentowl(["agents", "pool", "--min-idle", "0"]));
  expect((await app.agents.status()).minIdle).toBe(0);
  expect((await agentowl(["agents", "pool", "--min-idle", "many"])).code).toBe(2);

  ok(await agentowl(["agents", "release", id]));
  await until("released", async () => (await app.agents.get(id))?.state === "deleted");
  expect((await agentowl(["agents", "show", "rt_00000000000000000000000000"])).code).not.toBe(0);
});

test("the console's agents page shows the pool to an admin, and a member only the runtimes of their tenants", async () => {
  expect((await call("POST", "/v1/tenants", { body: { name: "gamma" } })).status).toBe(201);
  const claimed = await call("POST", "/v1/tenants/beta/agents", { body: { template: "desk", agent: "page" } });
  expect(claimed.status, JSON.stringify(claimed.body)).toBe(201);
  await createUsers(app, ["root", { username: "gam", role: "member", tenants: ["gamma"] }]);
  const page = async (user: string) => {
    const { cookie } = await signIn(app.url, user);
    const r = await fetch(`${app.url}/console/agents`, { headers: { cookie } });
    expect(r.status).toBe(200);
    return r.text();
  };
  const admin = await page("root");
  expect(admin).toContain(claimed.body.id);
  expect(admin).toMatch(/min_idle|min idle/i);
  expect(await page("gam")).not.toContain(claimed.body.id);
});

test("the shipped agents example applies on top of the main one, changing nothing else, and its template is claimed", async () => {
  const yaml = (name: string) => Bun.file(new URL(`../../examples/${name}`, import.meta.url)).text();
  const apply = async (name: string) =>
    call("POST", `/v1/config/apply?file=${name}`, {
      raw: await yaml(name),
      headers: { "content-type": "application/yaml" },
    });
  const signing = `whsec_${Buffer.from("cli-agents-example-signing-32byt").toString("base64")}`;
  expect((await call("PUT", "/v1/tenants/beta/secrets/crm-signing", { body: { value: signing } })).status).toBe(201);
  expect(
    (await call("PUT", "/v1/tenants/beta/secrets/github", { body: { value: "gh-secret-value-long" } })).status,
  ).toBe(201);
  const main = await apply("agentowl.yaml");
  expect(main.status, JSON.stringify(main.body)).toBe(200);
  const agents = await apply("agents.yaml");
  expect(agents.status, JSON.stringify(agents.body)).toBe(200);
  expect(agents.body.summary).toMatchObject({ created: 2, deleted: 0 });
  expect((await apply("agents.yaml")).body.summary).toMatchObject({ created: 0, updated: 0, deleted: 0 });
  const claimed = await call("POST", "/v1/tenants/beta/agents", { body: { template: "front-desk", agent: "desk2" } });
  expect(claimed.status, JSON.stringify(claimed.body)).toBe(201);
  expect(claimed.body.addresses.email).toBe("desk2@beta.agentowl.lan");
});
