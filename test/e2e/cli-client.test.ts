/**
 * The operator's CLI against a real server: `agentowl tenants|endpoints|tokens|validate|diff|apply|
 * login` as real processes talking HTTP to an appliance started in this process on port 0. Every
 * answer is checked as the operator meets it: stdout, one line on stderr, the exit code.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { type App, startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { type RunResult, runAgentowl } from "../helpers/process.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-cli-4e1a7c9d2b6f8a3e5c0d";
const EXAMPLE = join(import.meta.dir, "..", "..", "examples", "agentowl.yaml");
const root = mkdtempSync(join(tmpdir(), "agentowl-cli-client-"));
const home = join(root, "home");
const work = join(root, "work");
let app: App;

/** `agentowl <args>` as the admin, from a temp dir with a temp HOME (so a profile never leaks in or out). */
function agentowl(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: string; token?: string | null } = {},
): Promise<RunResult> {
  const token = opts.token === undefined ? BOOTSTRAP : opts.token;
  const env: Record<string, string> = {
    HOME: home,
    XDG_CONFIG_HOME: "",
    AGENTOWL_URL: app.url,
    ...(token ? { AGENTOWL_TOKEN: token } : {}),
    ...opts.env,
  };
  return runAgentowl(args, { cwd: work, env, stdin: opts.stdin });
}

/** The API, directly, as the admin. */
async function api(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const res = await fetch(app.url + path, {
    method,
    headers: {
      authorization: `Bearer ${BOOTSTRAP}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** A failure is exactly one line on stderr (plus `extra` problem lines), never a stack trace. */
function failure(r: RunResult, code: number, extra = 0): string[] {
  expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(code);
  expect(r.stderr).not.toContain("    at ");
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, r.stderr).toHaveLength(1 + extra);
  return lines;
}

function ok(r: RunResult): string {
  expect(r.code, `stderr:\n${r.stderr}`).toBe(0);
  return r.stdout;
}

const file = (name: string, text: string): string => {
  writeFileSync(join(work, name), text);
  return name;
};

beforeAll(async () => {
  mkdirSync(home);
  mkdirSync(work);
  const config = loopbackConfig(root, BOOTSTRAP);
  app = await startApp({ config, log: silentLogger });
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("tenants", () => {
  test("create, ls as a table, get as YAML, and --json for scripts", async () => {
    expect(ok(await agentowl(["tenants", "create", "acme"]))).toBe("created tenant acme (resource_version 1)\n");
    writeFileSync(join(work, "tenant.yaml"), "name: acme-two\ndisplay_name: Acme Two\n");
    ok(await agentowl(["tenants", "create", "-f", "tenant.yaml"]));

    const table = ok(await agentowl(["tenants", "ls"]))
      .trimEnd()
      .split("\n");
    expect(table[0]).toMatch(/^NAME\s+DISPLAY NAME\s+VERSION\s+UPDATED$/);
    expect(table.find((l) => l.startsWith("acme-two "))).toContain("Acme Two");

    const got = YAML.parse(ok(await agentowl(["tenants", "get", "acme-two"])));
    expect(got).toMatchObject({ name: "acme-two", display_name: "Acme Two", resource_version: 1 });
    const listed = JSON.parse(ok(await agentowl(["tenants", "ls", "--json"])));
    expect(listed.map((t: { name: string }) => t.name)).toEqual(expect.arrayContaining(["acme", "acme-two"]));
    expect(JSON.parse(ok(await agentowl(["tenants", "get", "acme", "--json"])))).toMatchObject({
      name: "acme",
      resource_version: 1,
    });
  });

  test("creating a tenant that exists is a conflict: exit 4", async () => {
    await api("POST", "/v1/tenants", { name: "twice" });
    expect(failure(await agentowl(["tenants", "create", "twice"]), 4)[0]).toBe(
      "agentowl tenants create: tenant twice already exists",
    );
  });
});

describe("endpoints", () => {
  beforeAll(async () => {
    expect((await api("POST", "/v1/tenants", { name: "shop" })).status).toBe(201);
  });

  test("create -f, ls, get, update, delete", async () => {
    file("crm.yaml", "name: crm\nurl: http://10.0.0.5:9000/hooks\nretry: { max_attempts: 8 }\n");
    expect(ok(await agentowl(["endpoints", "create", "-t", "shop", "-f", "crm.yaml"]))).toMatch(
      /^created endpoint shop\/crm \(resource_version \d+\)\n$/,
    );

    const table = ok(await agentowl(["endpoints", "ls", "-t", "shop"]))
      .trimEnd()
      .split("\n");
    expect(table).toHaveLength(2);
    expect(table[0]).toMatch(/^NAME\s+URL\s+VERSION\s+UPDATED$/);
    expect(table[1]).toMatch(/^crm\s+http:\/\/10\.0\.0\.5:9000\/hooks\s+\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);

    const got = YAML.parse(ok(await agentowl(["endpoints", "get", "-t", "shop", "crm"])));
    expect(got).toMatchObject({
      tenant: "shop",
      name: "crm",
      url: "http://10.0.0.5:9000/hooks",
      retry: { max_attempts: 8 },
    });

    file("crm.json", JSON.stringify({ name: "crm", url: "http://10.0.0.6:9000/hooks" }));
    expect(ok(await agentowl(["endpoints", "update", "-t", "shop", "-f", "crm.json"]))).toBe(
      `updated endpoint shop/crm (resource_version ${got.resource_version} → ${got.resource_version + 1})\n`,
    );
    expect((await api("GET", "/v1/tenants/shop/endpoints/crm")).body).toMatchObject({
      url: "http://10.0.0.6:9000/hooks",
      resource_version: got.resource_version + 1,
    });

    expect(ok(await agentowl(["endpoints", "delete", "-t", "shop", "crm"]))).toBe("deleted endpoint shop/crm\n");
    expect((await api("GET", "/v1/tenants/shop/endpoints/crm")).status).toBe(404);
    expect(ok(await agentowl(["endpoints", "ls", "-t", "shop"]))).toBe("no endpoints in tenant shop\n");
  });

  test("an update made from a file that 'get' saved refuses to overwrite a newer change: exit 4", async () => {
    await api("POST", "/v1/tenants/shop/endpoints", { name: "erp", url: "http://10.0.0.7/a" });
    writeFileSync(join(work, "erp.yaml"), ok(await agentowl(["endpoints", "get", "-t", "shop", "erp"])));
    // Someone else changes it in between.
    expect((await api("PUT", "/v1/tenants/shop/endpoints/erp", { url: "http://10.0.0.7/theirs" })).status).toBe(200);
    writeFileSync(
      join(work, "erp.yaml"),
      readFileSync(join(work, "erp.yaml"), "utf8").replace("http://10.0.0.7/a", "http://10.0.0.7/mine"),
    );
    const lines = failure(await agentowl(["endpoints", "update", "-f", "erp.yaml"]), 4);
    expect(lines[0]).toStartWith("agentowl endpoints update: endpoint shop/erp is at resource_version");
    expect((await api("GET", "/v1/tenants/shop/endpoints/erp")).body.url).toBe("http://10.0.0.7/theirs");
  });

  test("a stale --if-match is a conflict (exit 4) and changes nothing", async () => {
    const { body } = await api("POST", "/v1/tenants/shop/endpoints", { name: "wms", url: "http://10.0.0.8/a" });
    await api("PUT", "/v1/tenants/shop/endpoints/wms", { url: "http://10.0.0.8/b" });
    file("wms.yaml", "url: http://10.0.0.8/c\n");
    failure(
      await agentowl([
        "endpoints",
        "update",
        "-t",
        "shop",
        "wms",
        "-f",
        "wms.yaml",
        "--if-match",
        String(body.resource_version),
      ]),
      4,
    );
    failure(
      await agentowl(["endpoints", "delete", "-t", "shop", "wms", "--if-match", String(body.resource_version)]),
      4,
    );
    expect((await api("GET", "/v1/tenants/shop/endpoints/wms")).body.url).toBe("http://10.0.0.8/b");
  });

  test("ls follows next_cursor through every page: all 120 endpoints, as a table and as JSON", async () => {
    await api("POST", "/v1/tenants", { name: "many" });
    for (let i = 0; i < 120; i++)
      expect(
        (
          await api("POST", "/v1/tenants/many/endpoints", {
            name: `ep-${String(i).padStart(3, "0")}`,
            url: `http://10.0.1.1/${i}`,
          })
        ).status,
      ).toBe(201);
    const table = ok(await agentowl(["endpoints", "ls", "-t", "many"]))
      .trimEnd()
      .split("\n");
    expect(table).toHaveLength(121);
    const items = JSON.parse(ok(await agentowl(["endpoints", "ls", "-t", "many", "--json", "--page-size", "7"])));
    expect(items.map((e: { name: string }) => e.name)).toEqual(
      Array.from({ length: 120 }, (_, i) => `ep-${String(i).padStart(3, "0")}`),
    );
  });
});

describe("exit codes", () => {
  test("3: not found, with one line naming what", async () => {
    expect(failure(await agentowl(["endpoints", "get", "-t", "shop", "ghost"]), 3)[0]).toBe(
      "agentowl endpoints get: endpoint shop/ghost not found",
    );
    expect(failure(await agentowl(["tenants", "get", "ghost"]), 3)[0]).toBe(
      "agentowl tenants get: tenant ghost not found",
    );
  });

  test("5: a bad token, or none", async () => {
    expect(failure(await agentowl(["tenants", "ls"], { token: "aow_not-a-real-token" }), 5)[0]).toBe(
      "agentowl tenants ls: the API token is not valid (unknown, expired or revoked)",
    );
    expect(failure(await agentowl(["tenants", "ls"], { token: null }), 5)[0]).toStartWith(
      `agentowl tenants ls: no API token for ${app.url}`,
    );
  });

  test("2: usage mistakes, before anything is sent", async () => {
    expect(failure(await agentowl(["endpoints", "ls"]), 2)[0]).toBe(
      "agentowl endpoints ls: missing -t TENANT (see 'agentowl endpoints ls --help')",
    );
    failure(await agentowl(["endpoints", "get", "-t", "shop"]), 2);
    failure(await agentowl(["endpoints", "update", "-t", "shop", "x", "-f", "crm.yaml", "--if-match", "latest"]), 2);
    failure(await agentowl(["tokens", "create", "--name", "x"]), 2);
  });

  test("1: an invalid body, every field at fault on its own line", async () => {
    file("bad.yaml", "name: bad\nurl: ftp://nowhere\nretry: { max_attempts: 0 }\n");
    const lines = failure(await agentowl(["endpoints", "create", "-t", "shop", "-f", "bad.yaml"]), 1, 2);
    expect(lines[0]).toBe("agentowl endpoints create: the request is not valid");
    expect(lines.slice(1).sort()).toEqual([
      expect.stringMatching(/^\/retry\/max_attempts: /),
      expect.stringMatching(/^\/url: /),
    ]);
    expect((await api("GET", "/v1/tenants/shop/endpoints/bad")).status).toBe(404);
  });

  test("1: nobody listening, with one clear line", async () => {
    const closed = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const url = `http://127.0.0.1:${closed.port}`;
    await closed.stop(true);
    const lines = failure(await agentowl(["tenants", "ls"], { env: { AGENTOWL_URL: url } }), 1);
    expect(lines[0]).toBe(`agentowl tenants ls: cannot reach agentowl at ${url}: connection refused`);
  });

  test("1: with no URL given, the CLI looks where this box's settings say the appliance listens, and an unreachable one says how to give the URL", async () => {
    const closed = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const port = closed.port;
    await closed.stop(true);
    const lines = failure(
      await agentowl(["tenants", "ls"], {
        env: {
          AGENTOWL_URL: "",
          AGENTOWL_HTTP_LISTEN: `127.0.0.1:${port}`,
          AGENTOWL_DATA_DIR: join(work, "elsewhere"),
        },
      }),
      1,
    );
    expect(lines[0]).toBe(
      `agentowl tenants ls: cannot reach agentowl at http://127.0.0.1:${port}: connection ` +
        `refused (the URL of this machine's settings; give the appliance's with AGENTOWL_URL or --url)`,
    );
  });
});

describe("desired state", () => {
  test("validate, diff and apply the example file; applying it again changes nothing", async () => {
    writeFileSync(join(work, "agentowl.yaml"), readFileSync(EXAMPLE));
    // Until the secrets it references exist, validate, diff and apply all refuse it, naming each
    // missing one where the file refers to it.
    for (const verb of ["validate", "diff", "apply"]) {
      const refused = await agentowl([verb, "-f", "agentowl.yaml", ...(verb === "apply" ? ["--dry-run"] : [])]);
      expect(refused.code, verb).toBe(1);
      expect(refused.stderr).toMatch(
        new RegExp(
          /agentowl\.yaml:\d+:\d+: endpoint beta\/crm: signing_secret names vault:beta\/crm-signing, /.source +
            /which is not in the vault \(set it first: agentowl vault set beta\/crm-signing\)/.source,
        ),
      );
      expect(refused.stderr).toMatch(
        /agentowl\.yaml:\d+:\d+: binding beta\/github: verify\.secret names vault:beta\/github, which is not in the vault/,
      );
    }
    expect((await api("GET", "/v1/tenants/beta")).status).toBe(404);
    ok(
      await agentowl(["vault", "set", "beta/crm-signing"], {
        stdin: `whsec_${Buffer.from("crm-signing-secret-value-32-byte").toString("base64")}\n`,
      }),
    );
    ok(await agentowl(["vault", "set", "beta/github"], { stdin: "github-webhook-secret\n" }));

    expect(ok(await agentowl(["validate", "-f", "agentowl.yaml"]))).toBe(
      "agentowl.yaml is valid: 1 tenant(s) (beta)\n",
    );
    const diff = ok(await agentowl(["diff", "-f", "agentowl.yaml"]));
    expect(diff).toContain("+ create tenant beta\n");
    expect(diff).toContain("+ create endpoint beta/crm\n");
    expect((await api("GET", "/v1/tenants/beta")).status).toBe(404);

    const dry = ok(await agentowl(["apply", "-f", "agentowl.yaml", "--dry-run"]));
    expect(dry).toEndWith("dry run: nothing was changed\n");
    expect((await api("GET", "/v1/tenants/beta")).status).toBe(404);

    const first = ok(await agentowl(["apply", "-f", "agentowl.yaml"]));
    expect(first).toMatch(/\n7 created, 0 updated, 0 unchanged, 0 deleted\n$/);
    expect((await api("GET", "/v1/tenants/beta/routes/hello-to-crm")).status).toBe(200);
    expect(ok(await agentowl(["apply", "-f", "agentowl.yaml"]))).toMatch(
      /^0 created, 0 updated, 7 unchanged, 0 deleted\n$/,
    );
    expect(
      JSON.parse(ok(await agentowl(["diff", "-f", "-", "--json"], { stdin: readFileSync(EXAMPLE, "utf8") }))),
    ).toMatchObject({
      summary: { created: 0, updated: 0, unchanged: 7, deleted: 0 },
      applied: false,
    });
  });

  test("a broken file: exit 1, every problem as file:line:col, and nothing changes", async () => {
    const before = (await api("GET", "/v1/tenants?limit=500")).body;
    file(
      "broken.yaml",
      [
        "apiVersion: agentowl/v1",
        "tenants:",
        "  - name: gamma",
        "    endpoints:",
        "      - name: crm",
        "        url: ftp://nope",
        "        retyr: 3",
        "",
      ].join("\n"),
    );
    for (const verb of ["validate", "apply"]) {
      const lines = failure(await agentowl([verb, "-f", "broken.yaml"]), 1, 2);
      expect(lines[0]).toBe(`agentowl ${verb}: broken.yaml is not valid: 2 problem(s)`);
      expect(lines[1]).toMatch(/^broken\.yaml:6:\d+: endpoint gamma\/crm: url /);
      expect(lines[2]).toBe("broken.yaml:7:9: endpoint gamma/crm: unknown field 'retyr' (did you mean 'retry'?)");
    }
    expect((await api("GET", "/v1/tenants?limit=500")).body).toEqual(before);
  });
});

describe("login", () => {
  const profile = () => join(home, ".config", "agentowl", "profile.toml");

  test("a token on stdin is checked, saved 0600, used by later commands, and never printed", async () => {
    const created = await api("POST", "/v1/tokens", { name: "laptop", scopes: ["admin"] });
    const token: string = created.body.token;
    const noEnv = { token: null, env: { AGENTOWL_URL: "" } };

    const login = await agentowl(["login", "--url", app.url], { ...noEnv, stdin: `${token}\n` });
    expect(ok(login)).toStartWith(`logged in to ${app.url}`);
    expect(statSync(profile()).mode & 0o777).toBe(0o600);
    expect(readFileSync(profile(), "utf8")).toContain(token);
    // The sign-in is in the audit log: who, from where, with what; never the token itself.
    const audit = await api("GET", `/v1/audit?action=auth.sign_in`);
    const entry = audit.body.items.find((e: { actor: string }) => e.actor === `token:${created.body.id}`);
    expect(entry).toMatchObject({
      action: "auth.sign_in",
      decision: "allow",
      details: { method: "token", client: "agentowl-cli", remote_ip: "127.0.0.1" },
    });
    expect(JSON.stringify(audit.body)).not.toContain(token);

    const ls = await agentowl(["tenants", "ls"], noEnv);
    expect(ok(ls)).toContain("acme");
    for (const r of [login, ls]) expect(r.stdout + r.stderr).not.toContain(token);

    expect(ok(await agentowl(["logout"], noEnv))).toStartWith("removed profile default");
    failure(await agentowl(["tenants", "ls"], noEnv), 5);
  });

  test("a token the server refuses is not saved: exit 5; no token on stdin: exit 2", async () => {
    const bad = "aow_this-token-does-not-exist-0000000000000000";
    const r = await agentowl(["login", "--url", app.url, "--profile", "bad"], { token: null, stdin: bad });
    failure(r, 5);
    expect(r.stdout + r.stderr).not.toContain(bad);
    expect(() => statSync(profile())).toThrow();
    failure(await agentowl(["login", "--url", app.url], { token: null }), 2);
  });
});

describe("tokens", () => {
  test("create prints the token once, alone on stdout; ls never shows it; revoke ends it", async () => {
    const created = await agentowl([
      "tokens",
      "create",
      "--name",
      "ci",
      "--scope",
      "tenant:shop:read",
      "--expires-in",
      "30d",
    ]);
    const token = ok(created).trim();
    expect(token).toMatch(/^aow_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain("store it now");
    const id = /created token (tok_\w+)/.exec(created.stderr)?.[1];
    expect(id).toBeDefined();

    const ls = await agentowl(["tokens", "ls"]);
    expect(ok(ls)).toMatch(new RegExp(`^${id}\\s+ci\\s+tenant:shop:read\\s`, "m"));
    expect(
      JSON.parse(ok(await agentowl(["tokens", "ls", "--json"]))).find((t: { id: string }) => t.id === id),
    ).toMatchObject({ name: "ci", revoked_at: null });
    expect(ls.stdout).not.toContain(token);

    ok(await agentowl(["endpoints", "ls", "-t", "shop"], { token }));
    failure(await agentowl(["endpoints", "create", "-t", "shop", "-f", "crm.yaml"], { token }), 5);
    expect(ok(await agentowl(["tokens", "revoke", id!]))).toBe(`revoked token ${id}\n`);
    failure(await agentowl(["endpoints", "ls", "-t", "shop"], { token }), 5);
    failure(await agentowl(["tokens", "revoke", "tok_00000000000000000000000000"]), 3);
  });
});
