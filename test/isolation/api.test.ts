/**
 * Tenant isolation over the API (guarantee 5, docs/guarantees.md). The route list is read from the
 * server's OpenAPI document (GET /v1/openapi.json), so a new route cannot escape. Tenants alpha
 * and beta get resources of every kind (endpoints, bindings of all three types, routes, policies,
 * templates, secrets, tokens, events, deliveries, approvals); alpha's tokens, read and write, then
 * ask for beta's resources by name and by id on every route and method. The guarantees:
 *   - every answer naming beta in its path is 404 or 403 (never a 2xx, never another 4xx that
 *     would tell its existence apart);
 *   - an answer not naming beta (lists, filters, config files) holds nothing of beta's;
 *   - no answer text holds any of beta's names, ids, phone numbers, addresses or URLs that the
 *     request itself did not send;
 *   - beta's state, read through an admin token before and after, is unchanged, and the audit log
 *     gained no allowed action on beta.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiCaller } from "../helpers/api.ts";
import { killLeftovers, serveAgentowl, waitUntil } from "../helpers/process.ts";

setDefaultTimeout(120_000);

const ADMIN = "bootstrap-isolation-2d6f8a0c4e1b3d5f7a9c";
const t0 = performance.now();
const root = mkdtempSync(join(tmpdir(), "agentowl-isolation-"));
let url = "";
const call = apiCaller(() => url, ADMIN);
let receiver: ReturnType<typeof Bun.serve>;

/** Each tenant's resources, with names that are its own (so a leak is findable in any text). */
function resourcesOf(t: "alpha" | "beta", port: number, publicKey: string) {
  const n = (s: string) => `${t}-${s}-q7`;
  const number = t === "alpha" ? "+15550001111" : "+15559998877";
  return {
    secrets: [
      {
        name: n("signing"),
        value: `whsec_${Buffer.from(`${t}-secret-value-zx81-${"k".repeat(16)}`).toString("base64")}`,
      },
    ],
    endpoints: [
      {
        name: n("crm"),
        url: `http://127.0.0.1:${port}/${t}/crm-hook-path`,
        signing_secret: `vault:${t}/${n("signing")}`,
      },
      {
        name: n("vip"),
        url: `http://127.0.0.1:${port}/${t}/vip-hook-path`,
        signing_secret: `vault:${t}/${n("signing")}`,
      },
    ],
    bindings: [
      { name: n("mail"), type: "email", addresses: [n("inbox")] },
      { name: n("hooks"), type: "webhook", verify: { scheme: "none" } },
      {
        name: n("sms"),
        type: "telnyx",
        numbers: [number],
        verify: { scheme: "telnyx-ed25519", public_key: publicKey },
      },
    ],
    routes: [{ name: n("route"), match: { channel: "webhook" }, to: [n("crm"), n("vip")] }],
    policies: [
      {
        name: n("guard"),
        rules: [{ when: { target: n("vip") }, effect: "require_approval", reason: `${t} vip check` }],
      },
    ],
    templates: [
      {
        name: n("helper"),
        instructions: `${t} instructions unique-txt`,
        model: { endpoint: `http://10.0.0.9:11434/${t}-model`, default: `${t}-llama` },
      },
    ],
    number,
  };
}
type Resources = ReturnType<typeof resourcesOf>;
const KINDS = ["endpoints", "bindings", "routes", "policies", "templates"] as const;

interface TenantWorld {
  res: Resources;
  eventId: string;
  deliveryId: string;
  approvalId: string;
  tokenId: string;
}
const world: Record<"alpha" | "beta", TenantWorld> = {} as never;
let alphaRead: string;
let alphaWrite: string;
let routes: { method: string; path: string; body: boolean }[] = [];

async function seed(t: "alpha" | "beta", publicKey: string): Promise<void> {
  const res = resourcesOf(t, receiver.port!, publicKey);
  expect((await call("POST", "/v1/tenants", { body: { name: t } })).status).toBe(201);
  for (const s of res.secrets)
    expect((await call("PUT", `/v1/tenants/${t}/secrets/${s.name}`, { body: { value: s.value } })).status).toBe(201);
  for (const kind of KINDS) {
    for (const spec of res[kind]) {
      const r = await call("POST", `/v1/tenants/${t}/${kind}`, { body: spec });
      expect(r.status, `${t} ${kind}: ${r.text}`).toBe(201);
    }
  }
  const tokenId = (
    await call("POST", "/v1/tokens", { body: { name: `${t}-reader-token-q7`, scopes: [`tenant:${t}:read`] } })
  ).body.id;
  const hook = await fetch(`${url}/ingress/webhook/${t}/${t}-hooks-q7`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret_field: `${t}-payload-marker-55` }),
  });
  expect(hook.status).toBe(202);
  const eventId = ((await hook.json()) as { id: string }).id;
  let deliveryId = "";
  let approvalId = "";
  await waitUntil(
    `${t}'s delivery and approval`,
    async () => {
      deliveryId = (await call("GET", `/v1/deliveries?tenant=${t}`)).body.items?.[0]?.id ?? "";
      approvalId = (await call("GET", `/v1/approvals?tenant=${t}`)).body.items?.[0]?.id ?? "";
      return !!deliveryId && !!approvalId;
    },
    20_000,
    50,
  );
  world[t] = { res, eventId, deliveryId, approvalId, tokenId };
}

/** Everything of beta's that must never appear in an answer to alpha: names, ids, numbers, addresses, URLs, values. */
function betaMarkers(): string[] {
  const w = world.beta;
  const r = w.res;
  return [
    ...r.secrets.flatMap((s) => [s.name, s.value]),
    ...KINDS.flatMap((k) => (r[k] as { name: string }[]).map((x) => x.name)),
    ...r.endpoints.map((e) => new URL(e.url).pathname),
    r.number,
    r.number.slice(1),
    "beta-inbox-q7",
    "beta instructions unique-txt",
    "beta-llama",
    "beta-payload-marker-55",
    "beta-reader-token-q7",
    w.eventId,
    w.deliveryId,
    w.approvalId,
    w.tokenId,
    '"beta"',
    "tenant:beta",
  ];
}

/** Beta's whole state, as an admin sees it (lists and each resource), for a before/after comparison. */
async function betaState(): Promise<string> {
  const parts: unknown[] = [];
  for (const path of [
    "/v1/tenants/beta",
    ...KINDS.map((k) => `/v1/tenants/beta/${k}`),
    "/v1/tenants/beta/secrets",
    "/v1/events?tenant=beta",
    `/v1/events/${world.beta.eventId}`,
    "/v1/deliveries?tenant=beta",
    "/v1/approvals?tenant=beta",
    "/v1/tokens?limit=500",
  ]) {
    const r = await call("GET", path);
    parts.push([path, r.status, r.body]);
  }
  return JSON.stringify(parts);
}

/** The audit entries so far (newest last), all pages. */
async function auditEntries(): Promise<any[]> {
  const out: any[] = [];
  let cursor = "";
  for (;;) {
    const r = await call("GET", `/v1/audit?limit=500${cursor ? `&cursor=${cursor}` : ""}`);
    expect(r.status).toBe(200);
    out.push(...r.body.items);
    if (!r.body.next_cursor) return out;
    cursor = r.body.next_cursor;
  }
}

beforeAll(async () => {
  receiver = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  const served = await serveAgentowl({ cwd: root, dataDir: join(root, "data"), token: ADMIN });
  url = served.url;
  const key = generateKeyPairSync("ed25519");
  const publicKey = (key.publicKey.export({ format: "der", type: "spki" }) as Buffer).subarray(-32).toString("base64");
  await seed("alpha", publicKey);
  await seed("beta", publicKey);
  alphaRead = (await call("POST", "/v1/tokens", { body: { name: "alpha-read", scopes: ["tenant:alpha:read"] } })).body
    .token;
  alphaWrite = (await call("POST", "/v1/tokens", { body: { name: "alpha-write", scopes: ["tenant:alpha:write"] } }))
    .body.token;
  const doc = (await call("GET", "/v1/openapi.json", { token: null })).body;
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, { requestBody?: unknown }>>)) {
    if (!path.startsWith("/v1/") || path === "/v1/openapi.json") continue;
    for (const [method, op] of Object.entries(ops))
      if (method !== "head") routes.push({ method: method.toUpperCase(), path, body: !!op.requestBody });
  }
});

afterAll(async () => {
  receiver?.stop(true);
  await killLeftovers();
  rmSync(root, { recursive: true, force: true });
  console.log(`[isolation] api: total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

/** The kind a path's {name} names: the segment before it (endpoints/{name}/status is an endpoint). */
function kindOf(path: string): string | null {
  return /\/(endpoints|bindings|routes|policies|templates|secrets)\/\{name\}/.exec(path)?.[1] ?? null;
}

/** Beta's name of that kind (or its tenant name for the tenant routes). */
function betaName(path: string): string {
  const kind = kindOf(path);
  const r = world.beta.res;
  if (kind === "secrets") return r.secrets[0]!.name;
  if (kind) return (r[kind as (typeof KINDS)[number]] as { name: string }[])[0]!.name;
  return "beta";
}

function betaId(path: string): string {
  const w = world.beta;
  if (path.startsWith("/v1/events/")) return w.eventId;
  if (path.startsWith("/v1/deliveries/")) return w.deliveryId;
  if (path.startsWith("/v1/approvals/")) return w.approvalId;
  if (path.startsWith("/v1/tokens/")) return w.tokenId;
  return w.eventId;
}

/** A body that would be valid for beta's resource, so a refusal cannot hide behind validation. */
function bodyFor(path: string, tenantInPath: string): string | undefined {
  const r = world.beta.res;
  const kind = /\/tenants\/\{tenant\}\/([a-z-]+)/.exec(path)?.[1];
  if (path.startsWith("/v1/config/")) {
    return `apiVersion: agentowl/v1\ntenants:\n  - name: beta\n    endpoints:\n      - name: beta-crm-q7\n        url: http://127.0.0.1:1/changed\n`;
  }
  if (kind && (KINDS as readonly string[]).includes(kind))
    return JSON.stringify({ ...(r[kind as (typeof KINDS)[number]] as object[])[0], name: undefined });
  if (kind === "secrets") return JSON.stringify({ value: "overwritten-by-alpha" });
  if (kind === "policy-test") return JSON.stringify({ event: world.beta.eventId });
  if (path === "/v1/tenants") return JSON.stringify({ name: tenantInPath });
  if (path === "/v1/tokens") return JSON.stringify({ name: "alpha-wants-beta", scopes: ["tenant:beta:write"] });
  if (path === "/v1/policies" || path.startsWith("/v1/policies/"))
    return JSON.stringify({ name: "beta-guard-q7", rules: [] });
  return "{}";
}

interface Case {
  what: string;
  method: string;
  path: string;
  /** Beta is named in the path: only 404/403 will do. */
  namesBeta: boolean;
  body?: string;
}

/** Every route × method, for beta by name, for beta's ids under alpha's name, and beta in filters. */
function cases(): Case[] {
  const out: Case[] = [];
  for (const route of routes) {
    const params = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
    const fill = (tenant: string) =>
      route.path
        .replace("{tenant}", tenant)
        .replace("{name}", betaName(route.path))
        .replace("{id}", betaId(route.path));
    const body = route.body ? bodyFor(route.path, "beta") : undefined;
    if (params.length) {
      out.push({ what: "beta by name", method: route.method, path: fill("beta"), namesBeta: true, body });
      // Beta's names under alpha's own tenant read nothing (alpha has no such resource; writing
      // one there would be alpha's own, so only reads). Beta's event in alpha's policy test.
      if (params.includes("tenant") && params.length > 1 && route.method === "GET")
        out.push({ what: "beta's name under alpha", method: route.method, path: fill("alpha"), namesBeta: true });
      if (route.path.endsWith("/policy-test"))
        out.push({
          what: "beta's event in alpha's policy test",
          method: route.method,
          path: fill("alpha"),
          namesBeta: true,
          body,
        });
      if (params.includes("id"))
        out.push({ what: "beta by id", method: route.method, path: fill("alpha"), namesBeta: true, body });
    } else {
      // No parameter: beta named in a filter, or in the body (tenants, tokens, config files).
      const filter = route.method === "GET" ? `${route.path}?tenant=beta` : route.path;
      // A body naming beta (a tenant, a token's scope, a config file) is refused; validate only reads the file it is sent.
      const bodyNamesBeta =
        route.method !== "GET" && route.path !== "/v1/config/validate" && (body ?? "").includes("beta");
      out.push({
        what: route.method === "GET" ? "beta in a filter" : "beta in the body",
        method: route.method,
        path: filter,
        namesBeta: bodyNamesBeta,
        body,
      });
      if (route.method === "GET")
        out.push({ what: "unfiltered", method: route.method, path: route.path, namesBeta: false });
    }
  }
  // Beta's phone number claimed by an alpha binding: refused without naming beta's tenant or binding
  // (guarantee 5, docs/guarantees.md).
  const sms = world.beta.res.bindings.find((b) => b.type === "telnyx")!;
  const steal = { ...sms, name: "alpha-steal-q7" };
  out.push({
    what: "beta's number in an alpha binding",
    method: "POST",
    path: "/v1/tenants/alpha/bindings",
    namesBeta: false,
    body: JSON.stringify(steal),
  });
  out.push({
    what: "beta's number in alpha's config",
    method: "POST",
    path: "/v1/config/diff",
    namesBeta: false,
    body: `apiVersion: agentowl/v1\ntenants:\n  - name: alpha\n    bindings:\n      - ${JSON.stringify(steal)}\n`,
  });
  return out;
}

describe("tenant isolation on every /v1 route of the OpenAPI document", () => {
  test("an alpha token (read or write) gets only 404/403 for beta's resources, by name or id, on every route and method, and no text of beta's", async () => {
    expect(routes.length).toBeGreaterThan(60);
    const markers = betaMarkers();
    const before = await betaState();
    const auditBefore = (await auditEntries()).length;
    const violations: string[] = [];
    const statuses = new Map<number, number>();
    let tried = 0;
    const all = cases();
    for (const [tokenName, token] of [
      ["alpha read", alphaRead],
      ["alpha write", alphaWrite],
    ] as const) {
      for (const c of all) {
        tried++;
        const headers: Record<string, string> = { authorization: `Bearer ${token}` };
        if (c.body !== undefined)
          headers["content-type"] = c.path.startsWith("/v1/config/") ? "application/yaml" : "application/json";
        const res = await fetch(`${url}${c.path}`, {
          method: c.method,
          headers,
          body: c.body,
          signal: AbortSignal.timeout(10_000),
        }).catch((e: Error) => e);
        const tag = `${tokenName}: ${c.method} ${c.path} (${c.what})`;
        if (res instanceof Error) {
          violations.push(`${tag} → ${res.message}`);
          continue;
        }
        const text = res.headers.get("content-type")?.startsWith("text/event-stream")
          ? (await res.body?.cancel(), "")
          : await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (c.namesBeta && res.status !== 404 && res.status !== 403)
          violations.push(`${tag} → ${res.status} (only 404/403 will do): ${text.slice(0, 200)}`);
        if (res.status >= 500) violations.push(`${tag} → ${res.status}: ${text.slice(0, 200)}`);
        // Beta's text the request did not itself carry.
        const sent = `${c.path} ${c.body ?? ""}`;
        for (const m of markers) {
          if (sent.includes(m.replaceAll('"', ""))) continue;
          if (text.includes(m))
            violations.push(`${tag} → ${res.status} names beta's ${JSON.stringify(m)}: ${text.slice(0, 200)}`);
        }
      }
    }
    const after = await betaState();
    const auditAfter = await auditEntries();
    const allowedOnBeta = auditAfter
      .slice(auditBefore)
      .filter((e) => e.decision !== "deny" && JSON.stringify(e).includes("beta"));
    console.log(
      `[isolation] api: ${routes.length} route × method pairs from /v1/openapi.json, ${tried} ` +
        `route × method × case × token combinations; ` +
        `answers ${[...statuses].map(([s, n]) => `${s}×${n}`).join(", ")}; ${violations.length} ` +
        `violations; ${auditAfter.length - auditBefore} new audit entries`,
    );
    expect(violations.slice(0, 30), `${violations.length} violations`).toEqual([]);
    expect(after, "beta's state changed").toBe(before);
    expect(allowedOnBeta, "audit entries of allowed actions on beta").toEqual([]);
  });
});
