import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, startApp } from "../../src/app/app.ts";
import { loadConfig } from "../../src/config/index.ts";
import { createLogger, LogTap, Redactor } from "../../src/core/log.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import { apiCaller } from "../helpers/api.ts";
import { storeEvent as storeEventIn, testEnvelope } from "../helpers/events.ts";
import { sqliteOf, until } from "../helpers/storage.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-admin-7f3a9c2e1b5d8f4a6c0e";
const root = mkdtempSync(join(tmpdir(), "agentowl-api-"));
let app: App;
let base: string;
const logTap = new LogTap();
/** One stored event per tenant, to aim every /v1/events/:id at. */
const eventOf: Record<string, string> = {};
/** One pending approval per tenant, likewise. */
const approvalOf: Record<string, string> = {};
const deliveryOf: Record<string, string> = {};

const envelope = testEnvelope;
const storeEvent = (e: Envelope, withDelivery = false) => storeEventIn(sqliteOf(app), e, withDelivery);

const call = apiCaller(() => base, BOOTSTRAP);

const TENANTS = {
  alpha: {
    endpoints: [{ name: "crm", url: "http://10.0.0.5:9000/hooks", signing_secret: "vault:alpha/crm-signing" }],
    bindings: [{ name: "mail", type: "email", addresses: ["hello"] }],
    routes: [{ name: "hello-to-crm", match: { channel: "email", agent: "hello" }, to: ["crm"] }],
    policies: [{ name: "guard", rules: [{ when: { "auth.dmarc": "fail" }, effect: "quarantine" }] }],
    templates: [
      { name: "helper", instructions: "Be brief.", model: { endpoint: "http://10.0.0.9:11434/v1", default: "llama3" } },
    ],
  },
};
const KINDS = ["endpoints", "bindings", "routes", "policies", "templates"] as const;
/** A global policy (docs/desired-state.md#policies): it decides for every tenant, and only an admin manages it. */
const GLOBAL_POLICY = {
  name: "house-rules",
  rules: [{ when: { "data.subject": { contains: "wire transfer" } }, effect: "require_approval", reason: "money" }],
};

async function seedTenant(name: string): Promise<void> {
  expect((await call("POST", "/v1/tenants", { body: { name } })).status).toBe(201);
  for (const kind of KINDS) {
    for (const spec of TENANTS.alpha[kind]) {
      const body = JSON.parse(JSON.stringify(spec).replaceAll("vault:alpha/", `vault:${name}/`));
      const r = await call("POST", `/v1/tenants/${name}/${kind}`, { body });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
  }
}

async function token(scopes: string[], extra: Record<string, unknown> = {}): Promise<string> {
  const r = await call("POST", "/v1/tokens", { body: { name: scopes.join(","), scopes, ...extra } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.token;
}

/** Every /v1 route the server has, as [method, path template]. */
function v1Routes(): [string, string][] {
  return (app.http.routes as { method: string; path: string }[])
    .filter((r) => r.path.startsWith("/v1/") && r.path !== "/v1/openapi.json" && r.method !== "HEAD")
    .map((r) => [r.method, r.path] as [string, string]);
}

/** Fill a route template with a tenant and the name of an existing object of that kind. */
function fill(path: string, tenant: string, override?: string): string {
  const segment = /\/tenants\/:tenant\/([a-z-]+)/.exec(path)?.[1];
  const kind = (KINDS as readonly string[]).includes(segment ?? "") ? (segment as (typeof KINDS)[number]) : undefined;
  const existing = kind ? TENANTS.alpha[kind][0]!.name : path.startsWith("/v1/policies/") ? GLOBAL_POLICY.name : tenant;
  return path
    .replace(":tenant", tenant)
    .replace(":name", override ?? existing)
    .replace(
      ":id",
      override ??
        (path.startsWith("/v1/events/")
          ? eventOf[tenant]!
          : path.startsWith("/v1/approvals/")
            ? approvalOf[tenant]!
            : path.startsWith("/v1/deliveries/")
              ? deliveryOf[tenant]!
              : "tok_00000000000000000000000000"),
    );
}

beforeAll(async () => {
  const config = loopbackConfig(root, BOOTSTRAP);
  const log = createLogger({ level: "debug", redactor: new Redactor(), sink: (line) => logTap.publish(line) });
  app = await startApp({ config, log, logTap });
  base = app.url;
  await seedTenant("alpha");
  await seedTenant("beta");
  expect((await call("POST", "/v1/policies", { body: GLOBAL_POLICY })).status).toBe(201);
  eventOf.alpha = await storeEvent(envelope("alpha", 0), true);
  eventOf.beta = await storeEvent(envelope("beta", 0), true);
  for (const tenant of ["alpha", "beta"]) {
    const parked = await sqliteOf(app).approvals.park({
      tenant,
      action: { kind: "dispatch", target: "crm" },
      policy: { name: "guard", version: 1, rule: 0 },
      expiresInMs: 86_400_000,
      onExpiry: "deny",
    });
    approvalOf[tenant] = parked.id;
    deliveryOf[tenant] = (await sqliteOf(app).events.deliveries({ eventId: eventOf[tenant], limit: 1 }))[0]!.id;
  }
});

afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("authentication", () => {
  test("every /v1 route answers 401 problem+json without a token, and with a bad one", async () => {
    const routes = v1Routes();
    expect(routes.length).toBeGreaterThan(30);
    for (const [method, path] of routes) {
      for (const t of [null, "aow_not-a-real-token"]) {
        const r = await call(method, fill(path, "alpha"), {
          token: t,
          body: method === "GET" || method === "DELETE" ? undefined : {},
        });
        expect(r.status, `${method} ${path}`).toBe(401);
        expect(r.headers.get("content-type")).toBe("application/problem+json");
        expect(r.headers.get("www-authenticate")).toContain("Bearer");
      }
    }
  });

  test("a token is shown once; listing never shows it; a revoked or expired token is refused", async () => {
    const created = await call("POST", "/v1/tokens", { body: { name: "ci", scopes: ["tenant:alpha:read"] } });
    expect(created.body.token).toMatch(/^aow_[A-Za-z0-9_-]{43}$/);
    expect((await call("GET", "/v1/version", { token: created.body.token })).status).toBe(200);
    const list = await call("GET", "/v1/tokens?limit=500");
    expect(JSON.stringify(list.body)).not.toContain(created.body.token);
    expect(list.body.items.find((t: { id: string }) => t.id === created.body.id)).toMatchObject({
      name: "ci",
      scopes: ["tenant:alpha:read"],
      revoked_at: null,
    });
    expect((await call("DELETE", `/v1/tokens/${created.body.id}`)).status).toBe(204);
    expect((await call("GET", "/v1/version", { token: created.body.token })).status).toBe(401);

    const shortLived = await call("POST", "/v1/tokens", {
      body: { name: "brief", scopes: ["admin"], expires_in: "1ms" },
    });
    const expiresAt = Date.parse(shortLived.body.expires_at);
    await until("the token's expiry to pass", () => Date.now() > expiresAt, 5000, 1);
    expect((await call("GET", "/v1/version", { token: shortLived.body.token })).status).toBe(401);
  });

  test("token scopes are validated", async () => {
    const r = await call("POST", "/v1/tokens", { body: { name: "x", scopes: ["tenant:Alpha:admin", "root"] } });
    expect(r.status).toBe(422);
    expect(r.body.errors.length).toBeGreaterThanOrEqual(1);
  });
});

describe("tenant isolation", () => {
  test("a token of tenant alpha gets 404 for every object of tenant beta, on every route", async () => {
    const alphaWrite = await token(["tenant:alpha:write"]);
    const checked: string[] = [];
    for (const [method, path] of v1Routes()) {
      if (
        !path.includes(":tenant") &&
        !path.startsWith("/v1/events/") &&
        !path.startsWith("/v1/approvals/") &&
        !path.startsWith("/v1/deliveries/")
      )
        continue;
      const body = method === "GET" || method === "DELETE" ? undefined : { name: "x" };
      const r = await call(method, fill(path, "beta"), { token: alphaWrite, body });
      expect(r.status, `${method} ${fill(path, "beta")} -> ${JSON.stringify(r.body)}`).toBe(404);
      expect(r.headers.get("content-type")).toBe("application/problem+json");
      checked.push(`${method} ${path}`);
    }
    expect(checked.length).toBeGreaterThan(30);
    // Beta is untouched, and alpha's own objects are visible to the same token.
    expect((await call("GET", "/v1/tenants/beta/endpoints/crm")).status).toBe(200);
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm", { token: alphaWrite })).status).toBe(200);
  });

  test("the answer for another tenant's object is the same as for one that does not exist", async () => {
    const alphaRead = await token(["tenant:alpha:read"]);
    const other = await call("GET", "/v1/tenants/beta/endpoints/crm", { token: alphaRead });
    const missing = await call("GET", "/v1/tenants/gamma/endpoints/crm", { token: alphaRead });
    expect(other.status).toBe(404);
    expect(other.body).toEqual({ ...missing.body, instance: other.body.instance });
  });

  test("a tenant token lists only its own tenants", async () => {
    const alphaRead = await token(["tenant:alpha:read"]);
    const r = await call("GET", "/v1/tenants", { token: alphaRead });
    expect(r.body.items.map((t: { name: string }) => t.name)).toEqual(["alpha"]);
  });

  test("a read token cannot write: 403 on every write route of its own tenant", async () => {
    const alphaRead = await token(["tenant:alpha:read"]);
    for (const [method, path] of v1Routes()) {
      if (!path.includes(":tenant") || method === "GET") continue;
      const r = await call(method, fill(path, "alpha"), {
        token: alphaRead,
        body: method === "DELETE" ? undefined : { name: "crm" },
      });
      expect(r.status, `${method} ${path}`).toBe(403);
    }
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm")).body.resource_version).toBe(1);
  });

  test("tokens and tenants are managed by admins only", async () => {
    const alphaWrite = await token(["tenant:alpha:write"]);
    expect((await call("GET", "/v1/tokens", { token: alphaWrite })).status).toBe(403);
    expect(
      (await call("POST", "/v1/tokens", { token: alphaWrite, body: { name: "x", scopes: ["admin"] } })).status,
    ).toBe(403);
    expect((await call("POST", "/v1/tenants", { token: alphaWrite, body: { name: "sneaky" } })).status).toBe(403);
  });

  test("global policies are an admin's: a tenant token can neither read nor change them", async () => {
    const alphaWrite = await token(["tenant:alpha:write"]);
    for (const [method, path] of v1Routes().filter(([, p]) => p.startsWith("/v1/policies"))) {
      const r = await call(method, fill(path, "alpha"), {
        token: alphaWrite,
        body: method === "GET" || method === "DELETE" ? undefined : GLOBAL_POLICY,
      });
      expect(r.status, `${method} ${path}`).toBe(403);
    }
    const admin = await call("GET", "/v1/policies");
    expect(
      admin.body.items.map((p: { name: string; global: boolean; tenant?: string }) => [p.name, p.global, p.tenant]),
    ).toEqual([[GLOBAL_POLICY.name, true, undefined]]);
    // A copy saved from GET goes back as it is: `global` is metadata, like `tenant`.
    const got = (await call("GET", `/v1/policies/${GLOBAL_POLICY.name}`)).body;
    expect(
      (
        await call("PUT", `/v1/policies/${GLOBAL_POLICY.name}`, {
          body: got,
          headers: { "if-match": `"${got.resource_version}"` },
        })
      ).status,
    ).toBe(200);
  });
});

describe("resources", () => {
  test("ETag and If-Match: a stale precondition gets 412 and changes nothing", async () => {
    await call("POST", "/v1/tenants/alpha/endpoints", { body: { name: "erp", url: "http://10.0.0.6/hooks" } });
    const got = await call("GET", "/v1/tenants/alpha/endpoints/erp");
    expect(got.headers.get("etag")).toBe('"1"');
    expect(got.body).toMatchObject({ tenant: "alpha", name: "erp", url: "http://10.0.0.6/hooks", resource_version: 1 });

    const updated = await call("PUT", "/v1/tenants/alpha/endpoints/erp", {
      body: { ...got.body, timeout: "5s" },
      headers: { "if-match": '"1"' },
    });
    expect(updated.status).toBe(200);
    expect(updated.headers.get("etag")).toBe('"2"');
    const stale = await call("PUT", "/v1/tenants/alpha/endpoints/erp", {
      body: { url: "http://10.0.0.7/" },
      headers: { "if-match": '"1"' },
    });
    expect(stale.status).toBe(412);
    expect(stale.headers.get("content-type")).toBe("application/problem+json");
    expect((await call("DELETE", "/v1/tenants/alpha/endpoints/erp", { headers: { "if-match": '"1"' } })).status).toBe(
      412,
    );
    expect((await call("GET", "/v1/tenants/alpha/endpoints/erp")).body).toMatchObject({
      url: "http://10.0.0.6/hooks",
      timeout: "5s",
      resource_version: 2,
    });

    const patched = await call("PATCH", "/v1/tenants/alpha/endpoints/erp", {
      body: { timeout: null, retry: { max_attempts: 3 } },
      headers: { "if-match": '"2"' },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.timeout).toBeUndefined();
    expect(patched.body.retry).toEqual({ max_attempts: 3 });
    expect((await call("DELETE", "/v1/tenants/alpha/endpoints/erp", { headers: { "if-match": '"3"' } })).status).toBe(
      204,
    );
    expect((await call("GET", "/v1/tenants/alpha/endpoints/erp")).status).toBe(404);
    // Re-created, it does not reuse a version a stale client may still hold.
    const again = await call("POST", "/v1/tenants/alpha/endpoints", {
      body: { name: "erp", url: "http://10.0.0.6/hooks" },
    });
    expect(again.body.resource_version).toBe(5);
    const history = await call("GET", "/v1/tenants/alpha/endpoints/erp/versions");
    expect(history.body.items.map((v: { op: string }) => v.op)).toEqual([
      "create",
      "update",
      "update",
      "delete",
      "create",
    ]);
  });

  test("concurrent updates racing on the same If-Match: exactly one wins", async () => {
    await call("POST", "/v1/tenants/alpha/endpoints", { body: { name: "race", url: "http://10.0.0.8/" } });
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        call("PUT", "/v1/tenants/alpha/endpoints/race", {
          body: { url: `http://10.0.0.8/${i}` },
          headers: { "if-match": '"1"' },
        }),
      ),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 412)).toHaveLength(11);
    const winner = results.find((r) => r.status === 200)!;
    expect((await call("GET", "/v1/tenants/alpha/endpoints/race")).body).toMatchObject({
      url: winner.body.url,
      resource_version: 2,
    });
  });

  test("a body with several faults is 422 listing every field", async () => {
    const r = await call("POST", "/v1/tenants/alpha/endpoints", {
      body: { name: "Bad Name", url: "ftp://x", retry: { max_attempts: 0 }, colour: "blue" },
    });
    expect(r.status).toBe(422);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    const fields = r.body.errors.map((e: { field: string }) => e.field).join(" ");
    for (const f of ["name", "url", "max_attempts"]) expect(fields).toContain(f);
  });

  test("an unknown field is a 422 naming it, never silently dropped", async () => {
    const r = await call("POST", "/v1/tenants/alpha/endpoints", {
      body: { name: "tidy", url: "http://10.0.0.9/", colour: "blue" },
    });
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body.errors)).toContain("colour");
    expect((await call("GET", "/v1/tenants/alpha/endpoints/tidy")).status).toBe(404);
    const put = await call("PUT", "/v1/tenants/alpha/endpoints/crm", {
      body: { url: "http://10.0.0.5/hooks", timout: "5s" },
    });
    expect(put.status).toBe(422);
  });

  test("references are checked: a route to a missing endpoint is 422; deleting an endpoint still routed to is 409", async () => {
    const r = await call("POST", "/v1/tenants/alpha/routes", { body: { name: "nowhere", to: ["ghost"] } });
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body.errors)).toContain("ghost");
    const d = await call("DELETE", "/v1/tenants/alpha/endpoints/crm");
    expect(d.status).toBe(409);
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm")).status).toBe(200);
    // Another tenant's secret is an isolation error, not a reference.
    const cross = await call("POST", "/v1/tenants/alpha/endpoints", {
      body: { name: "leak", url: "http://10.0.0.1/", signing_secret: "vault:beta/crm-signing" },
    });
    expect(cross.status).toBe(422);
  });

  test("a tenant with resources cannot be deleted (409); an empty one can", async () => {
    expect((await call("DELETE", "/v1/tenants/beta")).status).toBe(409);
    await call("POST", "/v1/tenants", { body: { name: "empty" } });
    expect((await call("DELETE", "/v1/tenants/empty")).status).toBe(204);
  });

  test("pagination walks more items than a page, each once, in name order", async () => {
    await call("POST", "/v1/tenants", { body: { name: "many" } });
    const names = Array.from({ length: 120 }, (_, i) => `ep-${String(i).padStart(3, "0")}`);
    await Promise.all(
      names.map((name) => call("POST", "/v1/tenants/many/endpoints", { body: { name, url: "http://10.1.1.1/" } })),
    );
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: Awaited<ReturnType<typeof call>> = await call(
        "GET",
        `/v1/tenants/many/endpoints?limit=50${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(r.status).toBe(200);
      seen.push(...r.body.items.map((e: { name: string }) => e.name));
      cursor = r.body.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(names);
    expect((await call("GET", "/v1/tenants/many/endpoints?cursor=garbage")).status).toBe(400);
    // A tenant that does not exist has no list, even for an admin.
    expect((await call("GET", "/v1/tenants/nope/endpoints")).status).toBe(404);
    expect((await call("GET", "/v1/tenants/many/endpoints?limit=0")).status).toBe(400);
  });
});

describe("bad input on every route", () => {
  test("a malformed name or id is 404 problem+json, never a 500", async () => {
    for (const [method, path] of v1Routes()) {
      if (!/:(tenant|name|id)/.test(path)) continue;
      for (const bad of ["BAD_Name", "x".repeat(300), "%00", "..%2F..%2Fetc"]) {
        const url = path
          .replace(":tenant", path.includes(":name") ? "alpha" : bad)
          .replace(":name", bad)
          .replace(":id", bad);
        const r = await call(method, url, {
          body: method === "GET" || method === "DELETE" ? undefined : { name: "x" },
        });
        expect(r.status, `${method} ${url}`).toBeLessThan(500);
        expect([404, 400, 422, 403]).toContain(r.status);
        expect(r.headers.get("content-type")).toBe("application/problem+json");
      }
    }
  });

  test("a malformed body is 400 or 422 problem+json on every route that takes one, never a 500", async () => {
    for (const [method, path] of v1Routes()) {
      if (method === "GET" || method === "DELETE") continue;
      for (const raw of ["{not json", "[]", '"a string"', "null", '{"name": 12}']) {
        // Each route in its own media type: the desired-state routes take YAML (JSON is 415 there).
        const r = await call(method, fill(path, "alpha"), {
          raw,
          headers: path.startsWith("/v1/config/") ? { "content-type": "application/yaml" } : {},
        });
        expect(r.status, `${method} ${path} ${raw} -> ${JSON.stringify(r.body)}`).toBeLessThan(500);
        expect([400, 422], `${method} ${path} ${raw} -> ${r.status} ${JSON.stringify(r.body)}`).toContain(r.status);
        expect(r.headers.get("content-type")).toBe("application/problem+json");
      }
    }
  });
});

describe("the API's own description", () => {
  test("/v1/version names the version, schema and API compatibility", async () => {
    const r = await call("GET", "/v1/version");
    expect(r.body).toMatchObject({
      api: { current: "v1", supported: ["v1"] },
      token: { name: "bootstrap", scopes: ["admin"] },
    });
    expect(JSON.stringify(r.body)).not.toContain(BOOTSTRAP);
    expect(typeof r.body.schema_version).toBe("number");
  });

  test("/v1/openapi.json documents exactly the routes the server has, with their body schemas", async () => {
    const r = await call("GET", "/v1/openapi.json", { token: null });
    expect(r.status).toBe(200);
    const documented = new Set<string>();
    for (const [path, ops] of Object.entries(r.body.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(ops))
        documented.add(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ":$1")}`);
    }
    // The console's pages are not API and are left out of the description (docs/console.md).
    const page = (path: string) => path === "/" || /^\/(console|t)(\/|$)/.test(path) || path === "/inbound/email";
    const all = (app.http.routes as { method: string; path: string }[]).filter(
      (r) => r.method !== "HEAD" && !r.path.includes("openapi") && !page(r.path),
    );
    const existing = new Set(all.map((r) => `${r.method} ${r.path}`));
    expect([...existing].filter((x) => !documented.has(x))).toEqual([]);
    expect([...documented].filter((x) => !existing.has(x) && !x.includes("openapi"))).toEqual([]);
    const post = r.body.paths["/v1/tenants/{tenant}/endpoints"].post;
    expect(JSON.stringify(post.requestBody)).toContain("signing_secret");
  });
});

describe("desired state: POST /v1/config/validate | diff | apply", () => {
  const example = () => Bun.file(join(import.meta.dir, "../../examples/agentowl.yaml")).text();
  const post = (what: string, yaml: string, query = "", tok?: string) =>
    call("POST", `/v1/config/${what}?file=agentowl.yaml${query}`, {
      raw: yaml,
      headers: { "content-type": "application/yaml" },
      token: tok,
    });

  test("validate, diff and apply refuse a file whose vault: secrets do not exist, naming every one at its place in the file, and change nothing", async () => {
    const before = await call("GET", "/v1/tenants/beta/endpoints/crm");
    for (const what of ["validate", "diff", "apply"]) {
      const r = await post(what, await example());
      expect(r.status, what).toBe(422);
      expect(r.body.errors.map((e: { field: string }) => e.field)).toEqual([
        expect.stringMatching(/^agentowl\.yaml:9:\d+$/),
        expect.stringMatching(/^agentowl\.yaml:13:\d+$/),
      ]);
      expect(r.body.errors.map((e: { message: string }) => e.message)).toEqual([
        "endpoint beta/crm: signing_secret names vault:beta/crm-signing, which is not in the vault (set it first: agentowl vault set beta/crm-signing)",
        "binding beta/github: verify.secret names vault:beta/github, which is not in the vault (set it first: agentowl vault set beta/github)",
      ]);
    }
    expect((await call("GET", "/v1/tenants/beta/endpoints/crm")).body).toEqual(before.body);
    await app.vault.set(
      "beta/crm-signing",
      `whsec_${Buffer.from("crm-signing-secret-value-32bytes").toString("base64")}`,
      { actor: "test" },
    );
    await app.vault.set("beta/github", "github-webhook-secret", { actor: "test" });
  });

  test("the specification's example applies as written, and a second apply changes nothing", async () => {
    const yaml = await example();
    expect((await post("validate", yaml)).body).toEqual({ valid: true, tenants: ["beta"], policies: [] });
    await call("DELETE", "/v1/tenants/beta/routes/hello-to-crm");
    const first = await post("apply", yaml);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body.applied).toBe(true);
    const second = await post("apply", yaml);
    expect(second.body.summary).toMatchObject({ created: 0, updated: 0, deleted: 0 });
    expect(second.body.changes.every((c: { op: string }) => c.op === "unchanged")).toBe(true);
    const binding = await call("GET", "/v1/tenants/beta/bindings/github");
    expect(binding.body.verify).toEqual({ scheme: "github-hmac-sha256", secret: "vault:beta/github" });
  });

  test("diff shows per-field changes and writes nothing; apply then writes them", async () => {
    const yaml = (await example()).replace("max_attempts: 8", "max_attempts: 9");
    const before = (await call("GET", "/v1/tenants/beta/endpoints/crm")).body;
    const diff = await post("diff", yaml);
    expect(diff.status).toBe(200);
    const update = diff.body.changes.find((c: { op: string }) => c.op === "update");
    expect(update).toMatchObject({
      kind: "endpoints",
      name: "crm",
      fields: [{ path: "retry.max_attempts", from: 8, to: 9 }],
    });
    expect(diff.body.text).toContain("retry.max_attempts");
    expect((await call("GET", "/v1/tenants/beta/endpoints/crm")).body.resource_version).toBe(before.resource_version);
    expect((await post("apply", yaml, "&dry_run=true")).body.applied).toBe(false);
    expect((await post("apply", yaml)).body.summary.updated).toBe(1);
    expect((await call("GET", "/v1/tenants/beta/endpoints/crm")).body.retry.max_attempts).toBe(9);
  });

  test("a broken file is refused with every problem at file:line:col, and nothing changes", async () => {
    const yaml = (await example())
      .replace("url: http://127.0.0.1:9000/hooks/agentowl", "url: ftp://nowhere")
      .replace("max_attempts: 8", "max_attempts: 0");
    const before = await call("GET", "/v1/tenants/beta/endpoints/crm");
    const r = await post("apply", yaml);
    expect(r.status).toBe(422);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    expect(r.body.errors.length).toBeGreaterThanOrEqual(2);
    for (const e of r.body.errors) expect(e.field).toMatch(/^agentowl\.yaml:\d+:\d+$/);
    const after = await call("GET", "/v1/tenants/beta/endpoints/crm");
    expect(after.body).toEqual(before.body);
    expect((await post("apply", "tenants: [unclosed")).status).toBe(422);
    // A reference to nothing is refused the same way, once the schema is right.
    const ghost = await post("apply", (await example()).replace("to: [crm]", "to: [ghost]"));
    expect(ghost.status).toBe(422);
    expect(ghost.body.errors[0].message).toContain("ghost");
  });

  test("--prune deletes what the file no longer declares, in one transaction", async () => {
    await call("POST", "/v1/tenants/beta/endpoints", { body: { name: "stray", url: "http://10.0.0.3/" } });
    const yaml = await example();
    expect((await post("diff", yaml)).body.changes.some((c: { op: string }) => c.op === "delete")).toBe(false);
    const pruned = await post("apply", yaml, "&prune=true");
    expect(pruned.status, JSON.stringify(pruned.body)).toBe(200);
    const deleted = pruned.body.changes
      .filter((c: { op: string }) => c.op === "delete")
      .map((c: { tenant: string; kind: string; name: string }) => `${c.tenant}/${c.kind}/${c.name}`);
    expect(deleted).toContain("beta/endpoints/stray");
    // The file declares no global policies: as with tenants, --prune deletes those it does not declare.
    expect(deleted).toContain("*/policies/house-rules");
    expect(pruned.body.text).toContain("- delete global policy house-rules");
    expect((await call("GET", "/v1/tenants/beta/endpoints/stray")).status).toBe(404);
    expect((await call("GET", "/v1/policies/house-rules")).status).toBe(404);
  });

  test("global policies: declared at the top level, applied by an admin, refused to a tenant token", async () => {
    const rules =
      "policies:\n  - name: house-rules\n    rules:\n" +
      "      - { when: { data.subject: { contains: wire transfer } }, effect: require_approval, " +
      "reason: money }\n";
    const yaml = `${await example()}${rules}`;
    expect((await post("validate", yaml)).body).toEqual({ valid: true, tenants: ["beta"], policies: ["house-rules"] });
    const diff = await post("diff", yaml);
    expect(diff.body.text).toContain("+ create global policy house-rules");
    const applied = await post("apply", yaml);
    expect(applied.body.summary).toMatchObject({ created: 1, updated: 0, deleted: 0 });
    expect((await call("GET", "/v1/policies/house-rules")).body).toMatchObject({ ...GLOBAL_POLICY, global: true });
    expect((await post("apply", yaml)).body.summary).toMatchObject({ created: 0, updated: 0, deleted: 0 });
    const changed = await post(
      "diff",
      yaml.replace("effect: require_approval, reason: money", "effect: deny, reason: money"),
    );
    expect(changed.body.text).toContain(
      '~ update global policy house-rules\n  rules[0].effect: "require_approval" → "deny"',
    );

    const betaWrite = await token(["tenant:beta:write"]);
    const refused = await post("apply", yaml, "", betaWrite);
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toContain("admin");
    // Without top-level policies, a tenant token's --prune never touches the global ones.
    expect((await post("apply", await example(), "&prune=true", betaWrite)).status).toBe(200);
    expect((await call("GET", "/v1/policies/house-rules")).status).toBe(200);

    const broken = await post(
      "validate",
      `${await example()}policies:\n  - name: house-rules\n` +
        `    rules: [{ when: { subject: { matches: "(" } }, effect: deny }]\n` +
        `  - { name: house-rules, rules: [] }\n`,
    );
    expect(broken.status).toBe(422);
    const texts = broken.body.errors.map((e: { text: string }) => e.text).join("\n");
    expect(texts).toMatch(/agentowl\.yaml:\d+:\d+: global policy house-rules: is not a valid regular expression/);
    expect(texts).toMatch(/agentowl\.yaml:\d+:\d+: global policy house-rules: is declared twice/);
  });

  test("a tenant token applies to its own tenant only, and cannot create tenants", async () => {
    const betaWrite = await token(["tenant:beta:write"]);
    const alphaWrite = await token(["tenant:alpha:write"]);
    const yaml = await example();
    expect((await post("apply", yaml, "", betaWrite)).status).toBe(200);
    expect((await post("apply", yaml, "", alphaWrite)).status).toBe(404);
    expect(
      (
        await post(
          "apply",
          yaml.replace("name: beta", "name: newcomer").replaceAll("vault:beta/", "vault:newcomer/"),
          "",
          betaWrite,
        )
      ).status,
    ).toBe(404);
    // Nor can it learn through validate or diff which secrets another tenant has: 404 before the vault is asked.
    for (const what of ["validate", "diff"])
      expect(
        (
          await post(
            what,
            yaml.replace("name: beta", "name: alpha").replaceAll("vault:beta/", "vault:alpha/"),
            "",
            betaWrite,
          )
        ).status,
        what,
      ).toBe(404);
    expect((await post("diff", yaml, "", await token(["tenant:beta:read"]))).status).toBe(200);
    // A read token may plan but not apply: 403, as for every write of a tenant it can see.
    expect((await post("apply", yaml, "", await token(["tenant:beta:read"]))).status).toBe(403);
  });
});

describe("signing secrets", () => {
  const post = (what: string, yaml: string) =>
    call("POST", `/v1/config/${what}?file=s.yaml`, { raw: yaml, headers: { "content-type": "application/yaml" } });
  const file = (ref: string) =>
    `apiVersion: agentowl/v1\ntenants:\n  - name: beta\n    endpoints:\n      - { name: plainsig, url: "http://127.0.0.1:9/", signing_secret: ${ref} }\n`;

  test("an endpoint cannot sign with a secret the Standard Webhooks libraries would reject: not at set, rotate, create or apply", async () => {
    // A secret nothing signs with may look like anything.
    expect(
      (await call("PUT", "/v1/tenants/beta/secrets/plain", { body: { value: "an-opaque-api-key-value" } })).body,
    ).toMatchObject({ name: "plain", format: "opaque" });
    const created = await call("POST", "/v1/tenants/beta/endpoints", {
      body: { name: "plainsig", url: "http://127.0.0.1:9/", signing_secret: "vault:beta/plain" },
    });
    expect(created.status).toBe(422);
    expect(created.body.errors).toEqual([
      {
        field: "/signing_secret",
        message: expect.stringMatching(
          /^vault:beta\/plain is not a Standard Webhooks secret \(whsec_ and the base64 of 24 to 64 bytes/,
        ),
      },
    ]);
    const planned = await post("validate", file("vault:beta/plain"));
    expect(planned.status).toBe(422);
    expect(planned.body.errors).toEqual([
      expect.objectContaining({
        field: "s.yaml:5:71",
        message: expect.stringMatching(
          /^endpoint beta\/plainsig: signing_secret names vault:beta\/plain, which is not a Standard Webhooks secret/,
        ),
      }),
    ]);
    // The secret an endpoint signs with cannot be set or rotated to such a value.
    const rotated = await call("POST", "/v1/tenants/beta/secrets/crm-signing/rotate", {
      body: { value: "crm-signing-secret-value" },
    });
    expect(rotated.status).toBe(422);
    expect(rotated.body.detail).toMatch(
      /^beta\/crm-signing signs the deliveries of endpoint beta\/crm: it must be whsec_/,
    );
    const good = `whsec_${Buffer.from("another-signing-secret-32-bytes!").toString("base64")}`;
    expect(
      (await call("POST", "/v1/tenants/beta/secrets/crm-signing/rotate", { body: { value: good } })).body,
    ).toMatchObject({ format: "whsec" });
    expect((await post("validate", file("vault:beta/crm-signing"))).status).toBe(200);
  });
});

describe("events and deliveries", () => {
  test("lists are newest first, paged, filtered, and only ever show visible tenants", async () => {
    await call("POST", "/v1/tenants", { body: { name: "busy" } });
    const ids: string[] = [];
    for (let i = 1; i <= 130; i++)
      ids.push(await storeEvent(envelope("busy", i, i % 2 ? {} : { type: "sms.received", channel: "sms" })));
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r: Awaited<ReturnType<typeof call>> = await call(
        "GET",
        `/v1/events?tenant=busy&limit=50${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(r.status).toBe(200);
      seen.push(...r.body.items.map((e: Envelope) => e.id));
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    const sms = await call("GET", "/v1/events?tenant=busy&type=sms.received&limit=500");
    expect(sms.body.items).toHaveLength(65);
    expect(sms.body.items.every((e: Envelope) => e.channel === "sms")).toBe(true);
    const window = await call(
      "GET",
      `/v1/events?tenant=busy&since=${encodeURIComponent(new Date(Date.UTC(2026, 10, 21, 14, 0, 10)).toISOString())}&until=2026-11-21T14:00:19Z`,
    );
    expect(window.body.items).toHaveLength(10);
    expect((await call("GET", "/v1/events?since=yesterday")).status).toBe(400);

    const alphaRead = await token(["tenant:alpha:read"]);
    const mine = await call("GET", "/v1/events?limit=500", { token: alphaRead });
    expect(new Set(mine.body.items.map((e: Envelope) => e.tenant))).toEqual(new Set(["alpha"]));
    expect((await call("GET", "/v1/events?tenant=busy", { token: alphaRead })).status).toBe(404);
  });

  test("following: events after an id, oldest first", async () => {
    const first = await storeEvent(envelope("alpha", 200));
    const second = await storeEvent(envelope("alpha", 201));
    const r = await call("GET", `/v1/events?tenant=alpha&after=${first}`);
    expect(r.body.items.map((e: Envelope) => e.id)).toEqual([second]);
    expect((await call("GET", "/v1/events?after=not-an-id")).status).toBe(400);
  });

  test("an event shows its envelope, deliveries and trace; an idempotent repeat stores nothing new", async () => {
    const e = await call("GET", `/v1/events/${eventOf.alpha!}`);
    expect(e.body).toMatchObject({ id: eventOf.alpha, tenant: "alpha", type: "webhook.received", data: { n: 0 } });
    expect(e.body.deliveries).toMatchObject([
      { event_id: eventOf.alpha, endpoint: "crm", state: "delivered", last_status: 200 },
    ]);
    expect(e.body.trace).toMatchObject([{ name: "ingress", outcome: "ok" }]);
    const again = await storeEvent(envelope("alpha", 0));
    expect(again).toBe(eventOf.alpha!);
  });

  test("deliveries list by tenant, event and state", async () => {
    const r = await call("GET", `/v1/deliveries?event=${eventOf.beta!}`);
    expect(r.body.items).toMatchObject([{ tenant: "beta", state: "delivered" }]);
    const alphaRead = await token(["tenant:alpha:read"]);
    const mine = await call("GET", "/v1/deliveries", { token: alphaRead });
    expect(mine.body.items.every((d: { tenant: string }) => d.tenant === "alpha")).toBe(true);
    expect((await call("GET", "/v1/deliveries?tenant=beta", { token: alphaRead })).status).toBe(404);
  });
});

describe("logs tail", () => {
  test("streams live log lines as Server-Sent Events to an admin, filtered by level", async () => {
    const res = await fetch(`${base}/v1/logs/tail?level=info`, { headers: { authorization: `Bearer ${BOOTSTRAP}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    // Any API call logs nothing at info, so log directly through the tap's publisher.
    logTap.publish(JSON.stringify({ time: "t", level: "debug", msg: "too quiet" }));
    logTap.publish(JSON.stringify({ time: "t", level: "warn", msg: "tail me" }));
    const deadline = Date.now() + 5000;
    while (!text.includes("tail me") && Date.now() < deadline)
      text += decoder.decode((await reader.read()).value ?? new Uint8Array());
    await reader.cancel();
    expect(text).toContain('data: {"time":"t","level":"warn","msg":"tail me"}');
    expect(text).not.toContain("too quiet");
  });

  test("an open stream does not hold up a graceful shutdown", async () => {
    const tap = new LogTap();
    const dir = join(root, "tail-shutdown");
    const config = loadConfig({
      env: {
        AGENTOWL_DATA_DIR: dir,
        AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
        AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
        AGENTOWL_BOOTSTRAP_TOKEN: BOOTSTRAP,
        AGENTOWL_SHUTDOWN_TIMEOUT: "20s",
      },
      cwd: root,
    });
    const other = await startApp({
      config,
      log: createLogger({ level: "info", redactor: new Redactor(), sink: (l) => tap.publish(l) }),
      logTap: tap,
    });
    const res = await fetch(`${other.url}/v1/logs/tail`, { headers: { authorization: `Bearer ${BOOTSTRAP}` } });
    const reader = res.body!.getReader();
    await reader.read();
    const started = Date.now();
    expect(await other.stop()).toEqual({ forced: false });
    expect(Date.now() - started).toBeLessThan(5_000);
    let done = false;
    while (!done) done = (await reader.read()).done;
  });

  test("is for admins only", async () => {
    const alphaWrite = await token(["tenant:alpha:write"]);
    expect((await call("GET", "/v1/logs/tail", { token: alphaWrite })).status).toBe(403);
  });
});

describe("policy test", () => {
  test("shows what the stored policies, or a draft in place of one, decide for a stored event; nothing changes", async () => {
    // Its own tenant: the --prune test above removed everything its file did not declare.
    await call("PUT", `/v1/policies/${GLOBAL_POLICY.name}`, { body: GLOBAL_POLICY });
    await call("POST", "/v1/tenants", { body: { name: "gamma" } });
    await call("POST", "/v1/tenants/gamma/endpoints", { body: { name: "crm", url: "http://10.0.0.5/" } });
    await call("POST", "/v1/tenants/gamma/policies", { body: TENANTS.alpha.policies[0] });
    const failing = await storeEvent(
      envelope("gamma", 300, {
        type: "email.received",
        channel: "email",
        data: { subject: "hi", auth: { dmarc: "fail" } },
      }),
    );
    const r = await call("POST", "/v1/tenants/gamma/policy-test", { body: { event: failing } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    // The global policy comes first, then the tenant's own.
    expect(r.body.policies).toEqual([
      { name: "house-rules", global: true, version: expect.any(Number), draft: false },
      { name: "guard", global: false, version: 1, draft: false },
    ]);
    const crm = r.body.decisions.find((d: { action: { target: string } }) => d.action.target === "crm");
    expect(crm).toMatchObject({ effect: "quarantine", policy: { name: "guard", global: false, version: 1 }, rule: 0 });

    const draft = { name: "guard", rules: [{ when: { target: "crm" }, effect: "deny", reason: "crm is down" }] };
    const withDraft = await call("POST", "/v1/tenants/gamma/policy-test", {
      body: { event: failing, policy: draft, targets: ["crm"] },
    });
    expect(withDraft.body.policies.map((p: { name: string; draft: boolean }) => `${p.name}:${p.draft}`)).toEqual([
      "house-rules:false",
      "guard:true",
    ]);
    expect(withDraft.body.decisions).toEqual([
      {
        action: { kind: "dispatch", target: "crm" },
        effect: "deny",
        policy: { name: "guard", global: false, version: 0 },
        rule: 0,
        reason: "crm is down",
      },
    ]);
    expect((await call("GET", "/v1/tenants/gamma/policies/guard")).body.rules[0].effect).toBe("quarantine");
  });

  test("global policies decide for every tenant; a draft of one is tested in its place, by an admin only", async () => {
    const wire = await storeEvent(
      envelope("gamma", 301, {
        type: "email.received",
        channel: "email",
        data: { subject: "urgent wire transfer", auth: { dmarc: "pass" } },
      }),
    );
    const r = await call("POST", "/v1/tenants/gamma/policy-test", { body: { event: wire, targets: ["crm"] } });
    expect(r.body.decisions).toEqual([
      {
        action: { kind: "dispatch", target: "crm" },
        effect: "require_approval",
        policy: { name: "house-rules", global: true, version: expect.any(Number) },
        rule: 0,
        reason: "money",
      },
    ]);

    const draft = { name: "house-rules", rules: [{ when: { "data.subject": { contains: "wire" } }, effect: "deny" }] };
    const drafted = await call("POST", "/v1/tenants/gamma/policy-test", {
      body: { event: wire, policy: draft, global: true, targets: ["crm"] },
    });
    expect(drafted.body.decisions[0]).toMatchObject({
      effect: "deny",
      policy: { name: "house-rules", global: true, version: 0 },
    });
    expect(
      drafted.body.policies.map((p: { name: string; global: boolean; draft: boolean }) => [p.name, p.global, p.draft]),
    ).toEqual([
      ["house-rules", true, true],
      ["guard", false, false],
    ]);
    const gammaWrite = await token(["tenant:gamma:write"]);
    expect(
      (
        await call("POST", "/v1/tenants/gamma/policy-test", {
          token: gammaWrite,
          body: { event: wire, targets: ["crm"] },
        })
      ).body.decisions[0].effect,
    ).toBe("require_approval");
    expect(
      (
        await call("POST", "/v1/tenants/gamma/policy-test", {
          token: gammaWrite,
          body: { event: wire, policy: draft, global: true },
        })
      ).status,
    ).toBe(403);
  });

  test("a broken draft is 422; another tenant's event is 404", async () => {
    const bad = await call("POST", "/v1/tenants/alpha/policy-test", {
      body: { event: eventOf.alpha!, policy: { name: "guard", rules: [{ when: {}, effect: "maybe" }] } },
    });
    expect(bad.status).toBe(422);
    expect((await call("POST", "/v1/tenants/alpha/policy-test", { body: { event: eventOf.beta! } })).status).toBe(404);
  });
});
