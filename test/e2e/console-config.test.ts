/**
 * The console's configuration pages over real HTTP against a real appliance
 * (docs/console.md#configuration): every write is the API's (the resource as /v1 shows it, audited
 * as `user:<name>`), validation messages are the API's beside their fields, a stale form shows
 * what changed, deletes are confirmed and refused while referenced, policies have history, diffs
 * and a dry run, the desired-state download is the API's export, every POST needs the CSRF token,
 * and another tenant's pages are 404s.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App } from "../../src/app/app.ts";
import { apiCaller } from "../helpers/api.ts";
import { consoleApp, signIn as signInAs, TWO_TENANTS } from "../helpers/console.ts";
import { storeEvent, testEnvelope } from "../helpers/events.ts";
import { sqliteOf } from "../helpers/storage.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-console-config-4f1c2b8e9a7d3c6b";
const root = mkdtempSync(join(tmpdir(), "agentowl-console-config-"));
let app: App;
let base: string;
const call = apiCaller(() => base, BOOTSTRAP);
let eventId = "";

const get = (path: string, cookie?: string) =>
  fetch(base + path, { redirect: "manual", headers: cookie ? { cookie } : {} });
const post = (path: string, form: Record<string, string>, cookie?: string) =>
  fetch(base + path, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", ...(cookie ? { cookie } : {}) },
    body: new URLSearchParams(form).toString(),
  });
const versionField = (html: string) => Number(/name="resource_version" value="(\d+)"/.exec(html)?.[1]);
const unescape = (s: string) =>
  s
    .replaceAll("&quot;", '"')
    .replaceAll("&#39;", "'")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&amp;", "&");

interface Session {
  cookie: string;
  csrf: string;
  /** POST a form with the session's cookie and CSRF token. */
  send(path: string, form: Record<string, string>): Promise<Response>;
}

async function signIn(username: string): Promise<Session> {
  const { cookie, csrf } = await signInAs(base, username);
  return { cookie, csrf, send: (path, form) => post(path, { _csrf: csrf, ...form }, cookie) };
}

/** The messages shown beside a field (its id is f-<name with dots as dashes>). */
function fieldErrors(html: string, name: string): string[] {
  const id = `f-${name.replace(/[^A-Za-z0-9_]/g, "-")}-err`;
  const list = new RegExp(`<ul id="${id}" class="field-errors">(.*?)</ul>`).exec(html)?.[1] ?? "";
  return [...list.matchAll(/<li>(.*?)<\/li>/g)].map((m) => unescape(m[1]!));
}

async function lastAudit(target: string) {
  const [entry] = await sqliteOf(app)
    .audit.list({ limit: 50 })
    .then((l) => l.filter((e) => e.target === target));
  return entry;
}

beforeAll(async () => {
  app = await consoleApp({
    root,
    bootstrap: BOOTSTRAP,
    ...TWO_TENANTS,
  });
  base = app.url;
  expect(
    (await call("POST", "/v1/tenants/beta/endpoints", { body: { name: "beta-only", url: "http://127.0.0.1:9/" } }))
      .status,
  ).toBe(201);
  eventId = await storeEvent(sqliteOf(app), testEnvelope("alpha", 1, { agent: "hello" }));
});

afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

/** One resource of each kind, as a form sends it, and a change to each. */
const CASES = [
  {
    kind: "endpoints",
    name: "crm",
    form: { name: "crm", url: "http://127.0.0.1:9/crm", "retry.max_attempts": "5", allow_public: "true" },
    expect: { url: "http://127.0.0.1:9/crm", retry: { max_attempts: 5 }, allow_public: true },
    edit: { url: "http://127.0.0.1:9/crm2", "retry.max_attempts": "6" },
    edited: { url: "http://127.0.0.1:9/crm2", retry: { max_attempts: 6 } },
  },
  {
    kind: "bindings",
    name: "mail",
    form: { name: "mail", type: "email", addresses: "hello\nsupport\n" },
    expect: { type: "email", addresses: ["hello", "support"] },
    edit: { type: "email", addresses: "hello" },
    edited: { type: "email", addresses: ["hello"] },
  },
  {
    kind: "routes",
    name: "to-crm",
    form: { name: "to-crm", match: "channel: webhook\n", to: "crm", priority: "10" },
    expect: { match: { channel: "webhook" }, to: ["crm"], priority: 10 },
    edit: { match: "channel: webhook\nagent: hello\n", to: "crm" },
    edited: { match: { channel: "webhook", agent: "hello" }, to: ["crm"] },
  },
  {
    kind: "policies",
    name: "guard",
    form: { name: "guard", default: "allow", rules: "- name: no-hooks\n  when: { channel: email }\n  effect: deny\n" },
    expect: { default: "allow", rules: [{ name: "no-hooks", when: { channel: "email" }, effect: "deny" }] },
    edit: {
      default: "allow",
      rules: "- name: no-hooks\n  when: { channel: webhook }\n  effect: deny\n  reason: hooks are held\n",
    },
    edited: {
      rules: [{ name: "no-hooks", when: { channel: "webhook" }, effect: "deny", reason: "hooks are held" }],
    },
  },
  {
    kind: "templates",
    name: "helper",
    form: {
      name: "helper",
      instructions: "Be brief.",
      "model.endpoint": "http://127.0.0.1:11434",
      "model.default": "m1",
    },
    expect: { instructions: "Be brief.", model: { endpoint: "http://127.0.0.1:11434", default: "m1" } },
    edit: { instructions: "Be briefer.", "model.endpoint": "http://127.0.0.1:11434", "model.default": "m2" },
    edited: { instructions: "Be briefer.", model: { endpoint: "http://127.0.0.1:11434", default: "m2" } },
  },
] as const;

describe("configuration through the console is the API's", () => {
  test("create and edit each kind through its form: the resource as /v1 shows it, audited as user:<name>", async () => {
    const mia = await signIn("mia");
    for (const c of CASES) {
      const form = await get(`/console/config/alpha/${c.kind}/_new`, mia.cookie);
      expect(form.status, c.kind).toBe(200);
      const created = await mia.send(`/console/config/alpha/${c.kind}/_new`, c.form);
      expect(created.status, `${c.kind}: ${created.status === 303 ? "" : await created.text()}`).toBe(303);
      expect(created.headers.get("location")).toBe(`/console/config/alpha/${c.kind}/${c.name}?saved=1`);
      const api = await call("GET", `/v1/tenants/alpha/${c.kind}/${c.name}`);
      expect(api.status).toBe(200);
      expect(api.body).toMatchObject({ name: c.name, ...c.expect, resource_version: 1 });
      const audit = await lastAudit(`alpha/${c.kind}/${c.name}`);
      expect(audit).toMatchObject({ actor: "user:mia", action: "resource.create", tenant: "alpha" });

      const page = await (await get(`/console/config/alpha/${c.kind}/${c.name}?saved=1`, mia.cookie)).text();
      expect(page).toContain("Saved as resource_version 1.");
      expect(versionField(page)).toBe(1);
      const edited = await mia.send(`/console/config/alpha/${c.kind}/${c.name}`, { ...c.edit, resource_version: "1" });
      expect(edited.status, c.kind).toBe(303);
      const after = await call("GET", `/v1/tenants/alpha/${c.kind}/${c.name}`);
      expect(after.body).toMatchObject({ ...c.edited, resource_version: 2 });
      expect(await lastAudit(`alpha/${c.kind}/${c.name}`)).toMatchObject({
        actor: "user:mia",
        action: "resource.update",
      });
    }
    // A field the form leaves empty is removed, as a PUT without it would.
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm")).body.allow_public).toBeUndefined();

    const tenant = await (await get("/console/config/alpha", mia.cookie)).text();
    for (const c of CASES) expect(tenant).toContain(`href="/console/config/alpha/${c.kind}/${c.name}"`);
    expect(tenant).toContain("http://127.0.0.1:9/crm2");
    expect(tenant).toContain("email · hello");
    expect(tenant).toContain("to crm · match channel, agent");
  });

  test("an admin creates a tenant and edits it; a member is refused the new-tenant form", async () => {
    const rootUser = await signIn("root");
    const list = await (await get("/console/config", rootUser.cookie)).text();
    expect(list).toContain('href="/console/config/_new"');
    const r = await rootUser.send("/console/config/_new", { name: "gamma", display_name: "Gamma Ltd" });
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/console/config/gamma");
    expect((await call("GET", "/v1/tenants/gamma")).body).toMatchObject({ display_name: "Gamma Ltd" });
    expect(await lastAudit("gamma/tenants/gamma")).toMatchObject({ actor: "user:root", action: "resource.create" });
    const edit = await rootUser.send("/console/config/gamma/settings", {
      display_name: "Gamma",
      resource_version: "1",
    });
    expect(edit.status).toBe(303);
    expect((await call("GET", "/v1/tenants/gamma")).body).toMatchObject({ display_name: "Gamma", resource_version: 2 });

    const mia = await signIn("mia");
    const mine = await (await get("/console/config", mia.cookie)).text();
    expect(mine).toContain('href="/console/config/alpha"');
    expect(mine).not.toContain("gamma");
    expect(mine).not.toContain("_new");
    expect((await get("/console/config/_new", mia.cookie)).status).toBe(403);
    expect((await mia.send("/console/config/_new", { name: "delta" })).status).toBe(403);
    expect((await call("GET", "/v1/tenants/delta")).status).toBe(404);
  });

  test("a validation error appears beside its field with the API's own message", async () => {
    const mia = await signIn("mia");
    const r = await mia.send("/console/config/alpha/endpoints/_new", {
      name: "bad",
      url: "ftp://x",
      "retry.max_attempts": "lots",
    });
    expect(r.status).toBe(422);
    const html = await r.text();
    // The API's control-plane validator (what a PATCH runs through) on the same values.
    const api = await call("PATCH", "/v1/tenants/alpha/endpoints/crm", {
      body: { url: "ftp://x", retry: { max_attempts: "lots" } },
    });
    expect(api.status).toBe(422);
    const byField = new Map<string, string>(
      api.body.errors.map((e: { field: string; message: string }) => [e.field, e.message]),
    );
    expect(fieldErrors(html, "url")).toEqual([byField.get("/url")!]);
    expect(fieldErrors(html, "retry.max_attempts")).toEqual([byField.get("/retry/max_attempts")!]);
    expect(html).toContain('aria-invalid="true"');
    // What was typed stays in the form.
    expect(html).toContain('value="ftp://x"');
    expect((await call("GET", "/v1/tenants/alpha/endpoints/bad")).status).toBe(404);

    // A reference the API refuses: beside the field it points into.
    const route = await mia.send("/console/config/alpha/routes/_new", { name: "nowhere", to: "missing" });
    expect(route.status).toBe(422);
    expect(fieldErrors(await route.text(), "to")).toEqual(["to[0]: no endpoint 'missing' in tenant alpha"]);

    // A YAML area that does not parse says so beside itself.
    const yaml = await mia.send("/console/config/alpha/policies/_new", { name: "broken", rules: "- when: [" });
    expect(yaml.status).toBe(422);
    expect(fieldErrors(await yaml.text(), "rules")[0]).toStartWith("is not valid YAML");
  });

  test("a stale form shows 'changed since you opened it' with the diff, and overwrites only when sent again", async () => {
    const mia = await signIn("mia");
    const opened = versionField(await (await get("/console/config/alpha/endpoints/crm", mia.cookie)).text());
    const other = await call("PATCH", "/v1/tenants/alpha/endpoints/crm", { body: { timeout: "5s" } });
    expect(other.status).toBe(200);
    const stale = await mia.send("/console/config/alpha/endpoints/crm", {
      url: "http://127.0.0.1:9/mine",
      "retry.max_attempts": "6",
      resource_version: String(opened),
    });
    expect(stale.status).toBe(412);
    const html = await stale.text();
    expect(html).toContain("Changed since you opened it");
    const rows = [
      ...html.matchAll(
        /<th scope="row"><code>([^<]+)<\/code><\/th><td class="from">(.*?)<\/td><td class="to">(.*?)<\/td>/g,
      ),
    ].map((m) => [m[1], unescape(m[2]!.replace(/<[^>]+>/g, "")), unescape(m[3]!.replace(/<[^>]+>/g, ""))]);
    expect(rows).toEqual([
      ["timeout", '"5s"', "(not set)"],
      ["url", '"http://127.0.0.1:9/crm2"', '"http://127.0.0.1:9/mine"'],
    ]);
    expect(html).toContain('href="/console/config/alpha/endpoints/crm"');
    // Nothing of mine was saved; the form now carries the stored version, so sending it overwrites.
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm")).body.url).toBe("http://127.0.0.1:9/crm2");
    expect(versionField(html)).toBe(other.body.resource_version);
    expect(html).toContain('value="http://127.0.0.1:9/mine"');
    const again = await mia.send("/console/config/alpha/endpoints/crm", {
      url: "http://127.0.0.1:9/mine",
      "retry.max_attempts": "6",
      resource_version: String(versionField(html)),
    });
    expect(again.status).toBe(303);
    const now = (await call("GET", "/v1/tenants/alpha/endpoints/crm")).body;
    expect(now).toMatchObject({ url: "http://127.0.0.1:9/mine", resource_version: other.body.resource_version + 1 });
    expect(now.timeout).toBeUndefined();
  });

  test("delete asks for confirmation, is refused with its reason while referenced, then deletes", async () => {
    const mia = await signIn("mia");
    const version = (await call("GET", "/v1/tenants/alpha/endpoints/crm")).body.resource_version;
    const ask = await mia.send("/console/config/alpha/endpoints/crm/delete", { resource_version: String(version) });
    expect(ask.status).toBe(200);
    const confirmPage = await ask.text();
    expect(confirmPage).toContain('name="confirm" value="yes"');
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm")).status).toBe(200);

    const refused = await mia.send("/console/config/alpha/endpoints/crm/delete", {
      resource_version: String(version),
      confirm: "yes",
    });
    expect(refused.status).toBe(409);
    expect(await refused.text()).toContain("alpha/routes/to-crm/to/0: no endpoint &#39;crm&#39; in tenant alpha");
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm")).status).toBe(200);

    const routeVersion = (await call("GET", "/v1/tenants/alpha/routes/to-crm")).body.resource_version;
    const stale = await mia.send("/console/config/alpha/routes/to-crm/delete", {
      resource_version: String(routeVersion - 1),
      confirm: "yes",
    });
    expect(stale.status).toBe(412);
    const gone = await mia.send("/console/config/alpha/routes/to-crm/delete", {
      resource_version: String(routeVersion),
      confirm: "yes",
    });
    expect(gone.status).toBe(303);
    expect((await call("GET", "/v1/tenants/alpha/routes/to-crm")).status).toBe(404);
    expect(await lastAudit("alpha/routes/to-crm")).toMatchObject({ actor: "user:mia", action: "resource.delete" });
  });
});

describe("policies", () => {
  test("history lists every version, and two versions compare field by field", async () => {
    const mia = await signIn("mia");
    const html = await (await get("/console/config/alpha/policies/guard/history", mia.cookie)).text();
    expect(html).toMatch(/<td>1<\/td><td>create<\/td><td>user:mia<\/td>/);
    expect(html).toMatch(/<td>2<\/td><td>update<\/td><td>user:mia<\/td>/);
    const diff = await (await get("/console/config/alpha/policies/guard/history?from=1&to=2", mia.cookie)).text();
    expect(diff).toContain("Version 1 → version 2");
    expect(diff).toContain("<code>rules[0].when.channel</code>");
    expect(diff).toContain('<code>&quot;email&quot;</code></td><td class="to"><code>&quot;webhook&quot;</code>');
    expect(diff).toContain("<code>rules[0].reason</code>");
    expect((await get("/console/config/alpha/policies/nothing/history", mia.cookie)).status).toBe(404);
  });

  test("a dry run shows the decision and the rule that matched, as POST /v1/.../policy-test answers", async () => {
    const mia = await signIn("mia");
    const html = await (await get(`/console/config/alpha/policies/guard/test?event=${eventId}`, mia.cookie)).text();
    const api = await call("POST", "/v1/tenants/alpha/policy-test", { body: { event: eventId } });
    expect(api.status).toBe(200);
    const [d] = api.body.decisions;
    expect(d).toMatchObject({ effect: "deny", rule: 0, rule_name: "no-hooks", action: { target: "crm" } });
    expect(html).toContain(
      '<td>crm</td><td class="effect-deny">deny</td><td>guard v2</td><td>rule 0 (no-hooks)</td><td>hooks are held</td>',
    );
    // Version 1 as a draft: it denies email, so this webhook event is allowed by the default.
    const v1 = await (
      await get(`/console/config/alpha/policies/guard/test?event=${eventId}&version=1`, mia.cookie)
    ).text();
    expect(v1).toContain('<td class="effect-allow">allow</td>');
    expect(v1).toContain("the policy&#39;s default");
    const unknown = await (await get(`/console/config/alpha/policies/guard/test?event=evt_nothing`, mia.cookie)).text();
    expect(unknown).toContain("not found in tenant alpha");
  });
});

describe("every configuration page", () => {
  test("is a whole document with the security headers, no inline script or style, a label on every control", async () => {
    const mia = await signIn("mia");
    for (const path of [
      "/console/config",
      "/console/config/alpha",
      "/console/config/alpha/endpoints",
      "/console/config/alpha/settings",
      "/console/config/alpha/bindings/_new",
      "/console/config/alpha/endpoints/crm",
      "/console/config/alpha/policies/guard",
      "/console/config/alpha/templates/helper",
      "/console/config/alpha/policies/guard/history?from=1&to=2",
      `/console/config/alpha/policies/guard/test?event=${eventId}`,
    ]) {
      const r = await get(path, mia.cookie);
      expect(r.status, path).toBe(200);
      expect(r.headers.get("content-security-policy"), path).toContain("default-src 'none'");
      expect(r.headers.get("cache-control"), path).toBe("no-store");
      const html = await r.text();
      expect(html.startsWith('<!doctype html><html lang="en">'), path).toBe(true);
      expect(html, path).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
      expect(html, path).not.toMatch(/\sstyle=|<style/);
      // Every visible control has a label naming it (or is itself a labelled button).
      for (const m of html.matchAll(/<(input|select|textarea)\b([^>]*)>/g)) {
        if (/type="hidden"/.test(m[2]!)) continue;
        const id = /\sid="([^"]+)"/.exec(m[2]!)?.[1];
        const wrapped = id === undefined;
        expect(wrapped || html.includes(`for="${id}"`), `${path} ${m[0]}`).toBe(true);
      }
    }
  });
});

describe("the desired state", () => {
  test("downloads as an attachment, byte for byte the API's export", async () => {
    const mia = await signIn("mia");
    const r = await get("/console/config/alpha/desired.yaml", mia.cookie);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-disposition")).toBe('attachment; filename="alpha.yaml"');
    expect(r.headers.get("content-type")).toBe("application/yaml; charset=utf-8");
    const text = await r.text();
    const api = await call("GET", "/v1/config/export?tenant=alpha");
    expect(api.status).toBe(200);
    expect(text).toBe(api.text);
    expect(text).toContain("apiVersion: agentowl/v1");
    // Applying it back changes nothing.
    const diff = await call("POST", "/v1/config/diff", { raw: text, headers: { "content-type": "application/yaml" } });
    expect(diff.status).toBe(200);
    expect(diff.body.changes.every((c: { op: string }) => c.op === "unchanged")).toBe(true);
  });
});

describe("refusals", () => {
  test("every POST needs the CSRF token, and changes nothing without it", async () => {
    const mia = await signIn("mia");
    const rootUser = await signIn("root");
    const version = String((await call("GET", "/v1/tenants/alpha/endpoints/crm")).body.resource_version);
    const posts: [Session, string, Record<string, string>][] = [
      [rootUser, "/console/config/_new", { name: "csrf-less" }],
      [mia, "/console/config/alpha/settings", { display_name: "x", resource_version: "1" }],
      [mia, "/console/config/alpha/endpoints/_new", { name: "csrf-less", url: "http://127.0.0.1:9/" }],
      [mia, "/console/config/alpha/endpoints/crm", { url: "http://127.0.0.1:9/x", resource_version: version }],
      [mia, "/console/config/alpha/bindings/mail/delete", { resource_version: "2", confirm: "yes" }],
    ];
    for (const [who, path, form] of posts) {
      expect((await post(path, form, who.cookie)).status, path).toBe(403);
      expect((await post(path, { ...form, _csrf: "wrong" }, who.cookie)).status, path).toBe(403);
    }
    expect((await call("GET", "/v1/tenants/csrf-less")).status).toBe(404);
    expect((await call("GET", "/v1/tenants/alpha/endpoints/csrf-less")).status).toBe(404);
    expect((await call("GET", "/v1/tenants/alpha/endpoints/crm")).body.resource_version).toBe(Number(version));
    expect((await call("GET", "/v1/tenants/alpha/bindings/mail")).status).toBe(200);
  });

  test("a member opening or posting to another tenant's configuration gets 404", async () => {
    const mia = await signIn("mia");
    for (const path of [
      "/console/config/beta",
      "/console/config/beta/endpoints",
      "/console/config/beta/endpoints/_new",
      "/console/config/beta/endpoints/beta-only",
      "/console/config/beta/settings",
      "/console/config/beta/desired.yaml",
      "/console/config/beta/policies/guard/history",
      "/console/config/beta/policies/guard/test",
      "/console/config/nonexistent",
      "/console/config/alpha/nokind",
      "/console/config/alpha/endpoints/nothing",
    ]) {
      const r = await get(path, mia.cookie);
      expect(r.status, path).toBe(404);
      expect(await r.text()).not.toContain("beta-only");
    }
    for (const [path, form] of [
      ["/console/config/beta/endpoints/_new", { name: "x", url: "http://127.0.0.1:9/" }],
      ["/console/config/beta/endpoints/beta-only", { url: "http://127.0.0.1:9/x", resource_version: "1" }],
      ["/console/config/beta/endpoints/beta-only/delete", { resource_version: "1", confirm: "yes" }],
      ["/console/config/beta/settings", { display_name: "x", resource_version: "1" }],
    ] as const) {
      expect((await mia.send(path, form)).status, path).toBe(404);
    }
    expect((await call("GET", "/v1/tenants/beta/endpoints/beta-only")).body.resource_version).toBe(1);
    expect((await call("GET", "/v1/tenants/beta/endpoints/x")).status).toBe(404);
  });
});
