/**
 * Hostile /v1 requests (guarantee 9, docs/guarantees.md): every route of the OpenAPI document (GET
 * /v1/openapi.json, so a new route is attacked the day it exists) with malformed ids, bodies,
 * content types, nesting, query strings and tokens, against a real `agentowl serve`. Never a 5xx
 * (a 503 only with Retry-After); every refusal problem+json with the status it documents; bad
 * tokens 401 before anything else; big unauthenticated bodies never read (bounded RSS); no
 * event-loop stall over 250 ms. Violations are gathered per family and listed together.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { NAME_PATTERN } from "../../src/control/resources/specs.ts";
import { type Family, HostileServer, mutate, seeded, suiteTimer } from "../helpers/hostile.ts";

setDefaultTimeout(150_000);

const rnd = seeded("api");
const done = suiteTimer("api");
let hs: HostileServer;
let admin: string;
let writer: string;
let reader: string;
/** [METHOD, /v1/path/{param}] of every route the document lists, and whether it takes a body. */
let routes: { method: string; path: string; body: boolean }[] = [];

/** Every request is answered within this, or it is a violation (and the family goes on). */
const ANSWER_WITHIN_MS = 10_000;
const NAME = new RegExp(NAME_PATTERN);

interface Answer {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/** One request, anything as body and headers; a client-side refusal (fetch will not send it) is null. */
async function send(
  method: string,
  path: string,
  opts: { token?: string | null; body?: string | Uint8Array; headers?: Record<string, string> } = {},
): Promise<Answer | null> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization ??= `Bearer ${opts.token}`;
  let res: Response;
  try {
    res = await fetch(`${hs.url}${path}`, {
      method,
      headers,
      body: opts.body,
      signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
    });
  } catch (e) {
    if ((e as Error).name === "TimeoutError")
      return { status: 0, headers: new Headers(), body: null, text: `no answer within ${ANSWER_WITHIN_MS} ms` };
    return null;
  }
  // The live log stream never ends by itself: its head is the answer.
  if (res.status === 200 && res.headers.get("content-type")?.startsWith("text/event-stream")) {
    await res.body?.cancel();
    return { status: 200, headers: res.headers, body: null, text: "" };
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body, text };
}

/** A family's violations, each named by the request that showed it. */
class Violations {
  readonly list: string[] = [];
  check(fam: Family, what: string, r: Answer | null, expected?: number[]): void {
    if (!r) {
      fam.saw("not sent");
      return;
    }
    fam.saw(r.status || "no answer");
    const tag = `${what} → ${r.status} ${r.text.slice(0, 160)}`;
    if (r.status === 0) {
      this.list.push(`no answer: ${tag}`);
      return;
    }
    // 431 comes from Bun's HTTP parser, before any route: a head too large has no body to speak of.
    if (r.status === 431) return;
    if (r.status === 503 && !r.headers.get("retry-after")) this.list.push(`503 without Retry-After: ${tag}`);
    if (r.status >= 500 && r.status !== 503) this.list.push(`server error: ${tag}`);
    if (r.status >= 400 && !r.headers.get("content-type")?.startsWith("application/problem+json"))
      this.list.push(`not problem+json: ${tag}`);
    else if (r.status >= 400 && r.body?.status !== r.status) this.list.push(`problem status differs: ${tag}`);
    if (expected && !expected.includes(r.status)) this.list.push(`expected ${expected.join("/")}: ${tag}`);
  }
  print(name: string): void {
    // The worst first: server errors, then the rest, then a status merely other than the expected.
    const rank = (l: string) =>
      l.startsWith("server error") || l.startsWith("no answer") ? 0 : l.startsWith("expected") ? 2 : 1;
    this.list.sort((a, b) => rank(a) - rank(b));
    for (const line of this.list.slice(0, 40)) console.log(`[hostile] ${name}: VIOLATION ${line.slice(0, 300)}`);
    if (this.list.length > 40) console.log(`[hostile] ${name}: … ${this.list.length - 40} more violations`);
  }
  assert(name: string): void {
    expect(this.list.slice(0, 25), `${name}: ${this.list.length} violations`).toEqual([]);
  }
}

function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Fill a path's parameters: each from `values`, else a valid-looking one for the role it plays. */
function fill(path: string, values: Record<string, string> = {}): string {
  return path.replace(
    /\{(\w+)\}/g,
    (_, p: string) =>
      values[p] ??
      (p === "tenant" ? "alpha" : p === "name" ? "crm" : p === "id" ? "evt_00000000000000000000000000" : "x"),
  );
}

beforeAll(async () => {
  hs = await HostileServer.start("api");
  admin = HostileServer.TOKEN;
  const call = hs.call;
  expect((await call("POST", "/v1/tenants", { body: { name: "alpha" } })).status).toBe(201);
  expect(
    (
      await call("PUT", "/v1/tenants/alpha/secrets/crm-signing", {
        body: { value: `whsec_${Buffer.from("s3cret-value-for-crm-signing-32b").toString("base64")}` },
      })
    ).status,
  ).toBe(201);
  expect(
    (
      await call("POST", "/v1/tenants/alpha/endpoints", {
        body: { name: "crm", url: "http://10.0.0.5:9000/hooks", signing_secret: "vault:alpha/crm-signing" },
      })
    ).status,
  ).toBe(201);
  expect(
    (await call("POST", "/v1/tenants/alpha/bindings", { body: { name: "mail", type: "email", addresses: ["hello"] } }))
      .status,
  ).toBe(201);
  const tok = async (scopes: string[]) =>
    (await call("POST", "/v1/tokens", { body: { name: scopes.join(","), scopes } })).body.token as string;
  writer = await tok(["tenant:alpha:write"]);
  reader = await tok(["tenant:alpha:read"]);
  const doc = (await call("GET", "/v1/openapi.json", { token: null })).body;
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, { requestBody?: unknown }>>)) {
    if (!path.startsWith("/v1/") || path === "/v1/openapi.json") continue;
    for (const [method, op] of Object.entries(ops))
      routes.push({ method: method.toUpperCase(), path, body: !!op.requestBody });
  }
  routes = routes.filter((r) => r.method !== "HEAD");
});

afterAll(async () => {
  await hs?.close();
  done();
});

describe("every /v1 route of the OpenAPI document under attack", () => {
  test("the document lists the control plane's routes", () => {
    expect(routes.length).toBeGreaterThan(60);
    console.log(`[hostile] api: ${routes.length} route × method pairs from /v1/openapi.json`);
  });

  test("missing, malformed and wrong tokens are 401 problem+json with WWW-Authenticate, on every route", async () => {
    const fam = await hs.family("api: tokens");
    const v = new Violations();
    const tokens: [string, Record<string, string>][] = [
      ["none", {}],
      ["empty bearer", { authorization: "Bearer " }],
      ["bearer without space", { authorization: `Bearer${admin}` }],
      ["basic", { authorization: `Basic ${btoa(`admin:${admin}`)}` }],
      ["lower-case scheme, wrong token", { authorization: "bearer aow_x" }],
      [
        "mutated admin token",
        {
          authorization: `Bearer ${Buffer.from(mutate(rnd, Buffer.from(admin)))
            .toString("latin1")
            .replace(/[^\x21-\x7e]/g, "Z")}`,
        },
      ],
      ["an 8 KiB token", { authorization: `Bearer aow_${"A".repeat(8 * 1024)}` }],
      ["two tokens", { authorization: `Bearer aow_x, Bearer ${admin}` }],
      ["token in x-api-key", { "x-api-key": admin }],
      ["token in a cookie", { cookie: `token=${admin}` }],
    ];
    for (const route of routes) {
      for (const [what, headers] of tokens) {
        fam.try(what);
        const r = await send(route.method, fill(route.path), {
          headers: { ...headers, ...(route.body ? { "content-type": "application/json" } : {}) },
          body: route.body ? "{" : undefined,
        });
        // Authenticate before reading: even a broken body answers 401 (guarantee 9, docs/guarantees.md).
        v.check(fam, `${route.method} ${route.path} with ${what}`, r, [401]);
        if (r?.status === 401 && !r.headers.get("www-authenticate")?.includes("Bearer"))
          v.list.push(`no WWW-Authenticate: ${route.method} ${route.path} with ${what}`);
      }
    }
    v.print(fam.name);
    await fam.end();
    v.assert(fam.name);
  });

  test("a tenant token on an admin route is 403, a read token's write is 403", async () => {
    const fam = await hs.family("api: scopes");
    const v = new Violations();
    for (const route of routes) {
      const tenantRoute = route.path.includes("{tenant}");
      // Listing tenants shows a tenant token its own: not an admin route. Nor are the agents' routes
      // outside a tenant's path (each runtime answers for its tenant) and the plugins' list, but for
      // the pool's size.
      const agentsRoute =
        (route.path.startsWith("/v1/agents") && !(route.method === "PUT" && route.path === "/v1/agents/pool")) ||
        route.path === "/v1/tools";
      const adminRoute =
        !tenantRoute &&
        !agentsRoute &&
        !(route.method === "GET" && route.path === "/v1/tenants") &&
        !/^\/v1\/(version|sign-in|events|deliveries|approvals|audit|logs|config)/.test(route.path);
      const body = route.body ? "{}" : undefined;
      const headers = route.body
        ? { "content-type": route.path.startsWith("/v1/config/") ? "application/yaml" : "application/json" }
        : undefined;
      if (adminRoute) {
        fam.try("tenant writer on an admin route");
        v.check(
          fam,
          `${route.method} ${route.path} as alpha writer`,
          await send(route.method, fill(route.path), { token: writer, body, headers }),
          [403],
        );
      }
      if (route.method !== "GET" && (tenantRoute || route.path.startsWith("/v1/config/apply"))) {
        fam.try("reader writing");
        const r = await send(route.method, fill(route.path), {
          token: reader,
          body: route.path.startsWith("/v1/config/") ? "apiVersion: agentowl/v1\ntenants:\n  - name: alpha\n" : body,
          headers,
        });
        v.check(fam, `${route.method} ${route.path} as alpha reader`, r, [403]);
      }
    }
    v.print(fam.name);
    await fam.end();
    v.assert(fam.name);
  });

  test("malformed ids in every path parameter are 4xx problem+json", async () => {
    const fam = await hs.family("api: malformed ids");
    const v = new Violations();
    const ids = [
      "%00",
      "..%2F..%2Fetc%2Fpasswd",
      "%2e%2e",
      "a".repeat(5000),
      "%ff%fe%c3%28",
      "ALPHA",
      "-x-",
      "x".repeat(64),
      "%F0%9F%98%80",
      "evt_%00%00",
      "evt_" + "Z".repeat(26),
      "tok_" + "0".repeat(200),
      "1'%20OR%20'1'='1",
      "%25",
      "__proto__",
      "constructor",
      "null",
      "-1",
      "1e309",
    ];
    for (const route of routes) {
      const params = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      for (const param of params) {
        for (const id of ids) {
          fam.try(`{${param}}`);
          // A body that is valid where it can be, so the id alone decides (a secret's body is its value:
          // its name is the path's).
          const body = route.body
            ? route.path.startsWith("/v1/config/")
              ? "apiVersion: agentowl/v1\ntenants: []\n"
              : route.path.includes("/secrets/")
                ? '{"value":"hostile-value"}'
                : "{}"
            : undefined;
          const r = await send(route.method, fill(route.path, { [param]: id }), {
            token: admin,
            body,
            headers: body
              ? { "content-type": route.path.startsWith("/v1/config/") ? "application/yaml" : "application/json" }
              : undefined,
          });
          v.check(fam, `${route.method} ${route.path} {${param}}=${id.slice(0, 40)}`, r);
          // A name outside the resource-name rules (docs/desired-state.md) can never name something, a
          // secret's included; an id never but a well-formed one. (%2e%2e is ".." to fetch, which climbs a segment.)
          const malformed = param === "id" || !NAME.test(decoded(id));
          if (r && r.status > 0 && r.status < 400 && malformed && id !== "%2e%2e")
            v.list.push(
              `success for a malformed ${param}: ${route.method} ${route.path} {${param}}=${id.slice(0, 40)} → ${r.status}`,
            );
        }
      }
    }
    v.print(fam.name);
    await fam.end();
    v.assert(fam.name);
  });

  test("malformed bodies, nesting and content types on every route that takes a body are 4xx problem+json (415 for a non-JSON type)", async () => {
    const fam = await hs.family("api: bodies and content types");
    const v = new Violations();
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
    const deepObj = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
    const bodies: [string, string | Uint8Array][] = [
      ["unterminated", "{"],
      ["array", "[]"],
      ["null", "null"],
      ["number", "1e309"],
      ["string", '"x"'],
      ["empty", ""],
      ["proto pollution", '{"__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}},"name":"pp"}'],
      ["long name", JSON.stringify({ name: "n".repeat(100_000) })],
      ["invalid UTF-8", new Uint8Array([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x7d])],
      ["deep array 1,000", deep(1_000)],
      ["deep object 10,000", deepObj(10_000)],
      ["deep array 100,000", deep(100_000)],
      [
        "deep when 100,000",
        JSON.stringify({ name: "deep", rules: [{ when: "PLACEHOLDER", effect: "deny" }] }).replace(
          '"PLACEHOLDER"',
          deepObj(100_000),
        ),
      ],
      ["2 MB string", JSON.stringify({ name: "big", value: "v".repeat(2 * 1024 * 1024) })],
      ["random bytes", rnd.bytes(4096)],
    ];
    const types = [
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "text/plain",
      "application/xml",
      "application/json; charset=latin1",
    ];
    // 10,000 and 100,000 deep on a tenant's policies (a deep `when`) and one other route, not on all 35:
    // every JSON body goes through the one depth scan before it is parsed (docs/api.md), so two show it.
    const withBody = routes.filter((r) => r.body && !r.path.startsWith("/v1/config/"));
    const deepOn = new Set([
      withBody.find((r) => r.method === "POST" && r.path === "/v1/tenants/{tenant}/policies")!,
      rnd.pick(withBody),
    ]);
    for (const route of routes.filter((r) => r.body)) {
      const config = route.path.startsWith("/v1/config/");
      // Ids that do not exist: a body that validates changes nothing that matters.
      const path = fill(route.path, { name: "hostile-x", id: "evt_00000000000000000000000000" });
      for (const [what, body] of bodies) {
        // YAML nesting has its own family (desired-state.test.ts): 100,000 deep would only repeat it, for minutes.
        if ((config || !deepOn.has(route)) && (what.includes("100,000") || what.includes("10,000"))) continue;
        fam.try(what);
        const r = await send(route.method, path, {
          token: admin,
          body,
          headers: { "content-type": config ? "application/yaml" : "application/json" },
        });
        v.check(fam, `${route.method} ${route.path} body ${what}`, r);
      }
      if (config) continue;
      for (const type of types) {
        fam.try(`content-type ${type.split(";")[0]}`);
        const body = type.startsWith("application/x-www")
          ? "name=hostile-form&url=http%3A%2F%2F10.0.0.1%2F"
          : type.startsWith("multipart")
            ? '--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nhostile-mp\r\n--x--\r\n'
            : '{"name":"hostile-ct"}';
        const r = await send(route.method, path, { token: admin, body, headers: { "content-type": type } });
        // A JSON route takes JSON (docs/api.md): anything else is 415 Unsupported Media Type.
        v.check(
          fam,
          `${route.method} ${route.path} as ${type}`,
          r,
          type.startsWith("application/json") ? undefined : [415],
        );
      }
    }
    v.print(fam.name);
    await fam.end();
    v.assert(fam.name);
  });

  test("malformed query strings on every GET route are 4xx problem+json or ignored", async () => {
    const fam = await hs.family("api: query strings");
    const v = new Violations();
    const queries = [
      "limit=-1",
      "limit=1e309",
      "limit=0x10",
      "limit=1&limit=2",
      "cursor=%%%",
      `cursor=${Buffer.from(JSON.stringify({ after: { $gt: "" } })).toString("base64url")}`,
      `cursor=${Buffer.from("[".repeat(50_000)).toString("base64url")}`,
      "since=not-a-date",
      "until=99999-99-99",
      "tenant=beta&tenant=alpha",
      "tenant[]=alpha",
      "type=%00",
      `channel=${"c".repeat(10_000)}`,
      "expect_head=zz",
    ];
    for (const route of routes.filter((r) => r.method === "GET")) {
      for (const q of queries) {
        fam.try(q.split("=")[0]!);
        v.check(
          fam,
          `GET ${route.path}?${q.slice(0, 40)}`,
          await send("GET", `${fill(route.path)}?${q}`, { token: admin }),
        );
      }
    }
    v.print(fam.name);
    await fam.end();
    v.assert(fam.name);
  });

  test("big unauthenticated bodies are refused 401 before they are read, and big bodies with a token 413 while reading", async () => {
    const fam = await hs.family("api: big bodies");
    const v = new Violations();
    const big = new Uint8Array(64 * 1024 * 1024).fill(0x61);
    fam.try("64 MiB without a token", 3);
    const unauth = await Promise.all(
      [0, 1, 2].map(() => send("POST", "/v1/tenants", { body: big, headers: { "content-type": "application/json" } })),
    );
    for (const r of unauth) v.check(fam, "64 MiB POST /v1/tenants without a token", r, [401]);
    fam.try("64 MiB with a token");
    v.check(
      fam,
      "64 MiB POST /v1/tenants/alpha/endpoints",
      await send("POST", "/v1/tenants/alpha/endpoints", {
        token: admin,
        body: big,
        headers: { "content-type": "application/json" },
      }),
      [413],
    );
    fam.try("64 MiB config");
    v.check(
      fam,
      "64 MiB POST /v1/config/validate",
      await send("POST", "/v1/config/validate", {
        token: admin,
        body: big,
        headers: { "content-type": "application/yaml" },
      }),
      [413],
    );
    v.print(fam.name);
    await fam.end();
    v.assert(fam.name);
  });
});
