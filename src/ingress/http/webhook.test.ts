import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loopbackConfig } from "../../../test/helpers/app.ts";
import { metric } from "../../../test/helpers/metrics.ts";
import { type App, startApp } from "../../app/app.ts";
import { createLogger, Redactor } from "../../core/log.ts";

/**
 * The webhook route is served twice (webhook.ts): as a Bun.serve route ahead of Elysia on the
 * main listener, and as an Elysia route that `app.handle` and the plain listener reach. These
 * tests send the same requests both ways and hold the answers to be the same.
 */

const TOKEN = "webhook-route-test-bootstrap-token-0000";
const KEY = Buffer.from("webhook-route-test-signing-secret-32");
const SECRET = `whsec_${KEY.toString("base64")}`;
const PATH = "/ingress/webhook/beta/hooks";

let root: string;
let app: App;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "agentowl-webhook-route-"));
  app = await startApp({
    config: loopbackConfig(root, TOKEN),
    log: createLogger({ level: "error", redactor: new Redactor(), sink: () => {} }),
  });
  const api = async (method: string, path: string, body: unknown) => {
    const r = await fetch(`${app.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(r.status, await r.clone().text()).toBeLessThan(300);
  };
  await api("POST", "/v1/tenants", { name: "beta" });
  await api("PUT", "/v1/tenants/beta/secrets/hooks", { value: SECRET });
  await api("POST", "/v1/tenants/beta/bindings", {
    name: "hooks",
    type: "webhook",
    verify: { scheme: "standard-webhooks", secret: "vault:beta/hooks" },
    require_json: true,
    max_body_bytes: 1024,
  });
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

function signed(id: string, body: string, key = KEY): Record<string, string> {
  const ts = String(Math.floor(Date.now() / 1000));
  return {
    "content-type": "application/json",
    "webhook-id": id,
    "webhook-timestamp": ts,
    "webhook-signature": `v1,${createHmac("sha256", key).update(`${id}.${ts}.${body}`).digest("base64")}`,
  };
}

interface Answer {
  status: number;
  type: string | null;
  retryAfter: string | null;
  body: Record<string, unknown>;
}

async function answer(r: Response): Promise<Answer> {
  const text = await r.text();
  return {
    status: r.status,
    type: r.headers.get("content-type")?.split(";")[0] ?? null,
    retryAfter: r.headers.get("retry-after"),
    body: text ? JSON.parse(text) : {},
  };
}

/** The same request over the socket (the Bun.serve route) and through app.handle (the Elysia route). */
async function both(path: string, init: RequestInit): Promise<[Answer, Answer]> {
  const overSocket = await answer(await fetch(`${app.url}${path}`, init));
  const throughApp = await answer(await app.http.handle(new Request(`http://127.0.0.1${path}`, init)));
  return [overSocket, throughApp];
}

const withoutIds = (a: Answer) => ({ ...a, body: { ...a.body, id: typeof a.body.id } });

describe("the webhook route ahead of Elysia", () => {
  test("a verified webhook is 202 {id} both ways, and a repeat of its delivery id is 200 with the first id either way", async () => {
    const body = JSON.stringify({ type: "ticket.created" });
    const [raw, viaApp] = await both(PATH, { method: "POST", headers: signed("msg_route_1", body), body });
    expect(raw.status).toBe(202);
    expect(raw.type).toBe("application/json");
    // The second request was a repeat of the first: the Elysia route found the socket route's event.
    expect(viaApp).toEqual({ ...raw, status: 200, body: { id: raw.body.id, duplicate: true } });
    const [again, againApp] = await both(PATH, { method: "POST", headers: signed("msg_route_1", body), body });
    expect(again).toEqual(viaApp);
    expect(againApp).toEqual(viaApp);
    const [fresh, freshApp] = await Promise.all([
      both(PATH, { method: "POST", headers: signed("msg_route_2", body), body }),
      both(PATH, { method: "POST", headers: signed("msg_route_3", body), body }),
    ]).then(([a, b]) => [a[0], b[1]] as const);
    expect(withoutIds(fresh)).toEqual(withoutIds(raw));
    expect(freshApp.status).toBe(200);
  });

  test("every refusal is the same problem+json both ways: 401, 404, 413, 415, 400", async () => {
    const body = JSON.stringify({ type: "ticket.created" });
    const cases: [string, string, RequestInit][] = [
      ["bad signature", PATH, { method: "POST", headers: signed("msg_bad", body, Buffer.from("wrong")), body }],
      ["unknown binding", "/ingress/webhook/beta/nope", { method: "POST", headers: signed("msg_nb", body), body }],
      ["unknown tenant", "/ingress/webhook/gamma/hooks", { method: "POST", headers: signed("msg_nt", body), body }],
      ["a name that is not a name", "/ingress/webhook/be%2Fta/hooks", { method: "POST", body }],
      ["too large", PATH, { method: "POST", headers: signed("msg_big", "x".repeat(2000)), body: "x".repeat(2000) }],
      [
        "not JSON",
        PATH,
        { method: "POST", headers: { ...signed("msg_text", "hi"), "content-type": "text/plain" }, body: "hi" },
      ],
      ["JSON that does not parse", PATH, { method: "POST", headers: signed("msg_junk", "{nope"), body: "{nope" }],
      ["no signature", PATH, { method: "POST", headers: { "content-type": "application/json" }, body }],
    ];
    for (const [what, path, init] of cases) {
      const [raw, viaApp] = await both(path, init);
      expect(raw.status, what).toBeGreaterThanOrEqual(400);
      expect(raw.type, what).toBe("application/problem+json");
      expect(raw, what).toEqual(viaApp);
    }
    const statuses = await Promise.all(cases.map(([, path, init]) => fetch(`${app.url}${path}`, init)));
    expect(statuses.map((r) => r.status)).toEqual([401, 404, 404, 404, 413, 415, 400, 401]);
  });

  test("other methods on the path still reach the app, and answer as before", async () => {
    const [raw, viaApp] = await both(PATH, { method: "GET" });
    expect(raw.status).toBe(404);
    expect(raw).toEqual(viaApp);
  });

  test("requests answered by the route ahead of Elysia are counted under the route's label", async () => {
    const label = { route: "/ingress/webhook/:tenant/:binding", method: "POST" };
    const before202 = await metric(app.metrics, "agentowl_http_requests_total", { ...label, status: "202" });
    const before401 = await metric(app.metrics, "agentowl_http_requests_total", { ...label, status: "401" });
    const body = JSON.stringify({ n: 1 });
    expect(
      (await fetch(`${app.url}${PATH}`, { method: "POST", headers: signed("msg_count", body), body })).status,
    ).toBe(202);
    const unsigned = { method: "POST", headers: { "content-type": "application/json" }, body };
    expect((await fetch(`${app.url}${PATH}`, unsigned)).status).toBe(401);
    expect(await metric(app.metrics, "agentowl_http_requests_total", { ...label, status: "202" })).toBe(before202 + 1);
    expect(await metric(app.metrics, "agentowl_http_requests_total", { ...label, status: "401" })).toBe(before401 + 1);
  });
});
