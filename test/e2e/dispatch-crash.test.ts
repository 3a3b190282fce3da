/**
 * SPEC §3.2 under a crash: `agentowl serve` is SIGKILLed while deliveries are in flight to a slow
 * receiver; after a restart every delivery ends delivered, none is lost, each arrived at least
 * once under its own stable webhook-id, and the audit log has an entry for every attempt that
 * started (one cut off by the kill included), at least as many as the attempts recorded.
 */
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { apiCaller } from "../helpers/api.ts";
import { killLeftovers, serveAgentowl, waitUntil } from "../helpers/process.ts";

setDefaultTimeout(60_000);

const TOKEN = "bootstrap-dispatch-crash-2b4d6f8a0c1e3f5a";
const SECRET = `whsec_${Buffer.from("dispatch-crash-signing-secret-32b").toString("base64")}`;
const root = mkdtempSync(join(tmpdir(), "agentowl-dispatch-crash-"));
const dir = join(root, "data");
afterEach(killLeftovers);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const serve = () => serveAgentowl({ cwd: root, dataDir: dir, token: TOKEN });

test("deliveries in flight when the server is SIGKILLed are all delivered after the restart, none lost", async () => {
  const seen = new Map<string, number>();
  const receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = await req.text();
      new Webhook(SECRET).verify(body, Object.fromEntries(req.headers));
      const id = req.headers.get("webhook-id")!;
      seen.set(id, (seen.get(id) ?? 0) + 1);
      await Bun.sleep(150);
      return new Response("ok");
    },
  });
  try {
    const first = await serve();
    const call = apiCaller(() => first.url, TOKEN);
    expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
    expect((await call("PUT", "/v1/tenants/beta/secrets/crm-signing", { body: { value: SECRET } })).status).toBe(201);
    for (const [kind, body] of [
      ["endpoints", { name: "crm", url: `http://127.0.0.1:${receiver.port}/hooks`, signing_secret: "vault:beta/crm-signing" }],
      ["bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } }],
      ["routes", { name: "all", to: ["crm"] }],
    ] as const) {
      expect((await call("POST", `/v1/tenants/beta/${kind}`, { body })).status).toBe(201);
    }
    const events: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await fetch(`${first.url}/ingress/webhook/beta/hooks`, { method: "POST", body: JSON.stringify({ n: i }) });
      expect(r.status).toBe(202);
      events.push(((await r.json()) as { id: string }).id);
    }
    await waitUntil("some deliveries under way", () => seen.size >= 5, 20_000);
    first.server.proc.kill("SIGKILL");
    await first.server.exited;
    const atKill = seen.size;
    expect(atKill).toBeLessThan(40);

    const second = await serve();
    const api = apiCaller(() => second.url, TOKEN);
    const states = async () => {
      const all: Record<string, any>[] = [];
      for (const e of events) all.push(...(await api("GET", `/v1/events/${e}`)).body.deliveries);
      return all;
    };
    await waitUntil("every delivery delivered", async () => (await states()).filter((d) => d.state === "delivered").length === 40, 40_000, 250);
    const deliveries = await states();
    expect(deliveries).toHaveLength(40);
    // Each arrived under its own id, at least once (a request cut off by the kill may come twice).
    for (const d of deliveries) expect(seen.get(d.id) ?? 0).toBeGreaterThanOrEqual(1);
    expect(seen.size).toBe(40);
    const audited = (await api("GET", "/v1/audit?action=delivery.attempt&limit=500")).body.items as { details: { delivery: string } }[];
    for (const d of deliveries) expect(audited.filter((e) => e.details.delivery === d.id).length).toBeGreaterThanOrEqual(d.attempts);
  } finally {
    receiver.stop(true);
  }
});

test("webhooks acknowledged while the server is SIGKILLed under load are all there after the restart, each routed to one delivery that is delivered", async () => {
  const seen = new Set<string>();
  const receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      seen.add(JSON.parse(await req.text()).id);
      return new Response("ok");
    },
  });
  const crashDir = join(root, "data-load");
  const serveHere = () => serveAgentowl({ cwd: root, dataDir: crashDir, token: TOKEN });
  try {
    const first = await serveHere();
    const call = apiCaller(() => first.url, TOKEN);
    expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
    for (const [kind, body] of [
      ["endpoints", { name: "crm", url: `http://127.0.0.1:${receiver.port}/hooks` }],
      ["bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } }],
      ["routes", { name: "all", to: ["crm"] }],
    ] as const) {
      expect((await call("POST", `/v1/tenants/beta/${kind}`, { body })).status).toBe(201);
    }
    // 20 senders, each sending the next webhook when its last one is acknowledged, until the kill.
    const acked: string[] = [];
    let killed = false;
    const senders = Array.from({ length: 20 }, async (_, s) => {
      for (let i = 0; !killed; i++) {
        try {
          const r = await fetch(`${first.url}/ingress/webhook/beta/hooks`, { method: "POST", body: JSON.stringify({ s, i }) });
          if (r.status === 202) acked.push(((await r.json()) as { id: string }).id);
        } catch {
          return; // the connection died with the server
        }
      }
    });
    await waitUntil("a few hundred acknowledged", () => acked.length >= 300, 20_000);
    first.server.proc.kill("SIGKILL");
    killed = true;
    await first.server.exited;
    await Promise.all(senders);

    const second = await serveHere();
    const api = apiCaller(() => second.url, TOKEN);
    for (const id of acked) {
      const r = await api("GET", `/v1/events/${id}`);
      expect(r.status).toBe(200);
      expect(r.body.deliveries.map((d: { endpoint: string }) => d.endpoint)).toEqual(["crm"]);
    }
    await waitUntil("every acknowledged event delivered", () => acked.every((id) => seen.has(id)), 40_000, 250);
  } finally {
    receiver.stop(true);
  }
});
