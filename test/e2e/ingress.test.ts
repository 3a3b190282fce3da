/**
 * HTTP ingress end to end (docs/api.md): real HTTP requests to the appliance running in
 * this process, signed by independent libraries (standardwebhooks, @octokit/webhooks-methods,
 * Node's Ed25519), and what comes out: events, duplicates, refusals, metrics and logs.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHmac, generateKeyPairSync, sign as edSign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sign as githubSign } from "@octokit/webhooks-methods";
import { Webhook } from "standardwebhooks";
import { type App, startApp } from "../../src/app/app.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { metric } from "../helpers/metrics.ts";
import { sqliteOf, until } from "../helpers/storage.ts";
import { loopbackConfig } from "../helpers/app.ts";

setDefaultTimeout(30_000);

const BOOTSTRAP = "bootstrap-ingress-6b2d8f4a1c3e5a7b9d0f";
const CORPUS = join(import.meta.dir, "..", "..", "..", "shared", "corpus");
const root = mkdtempSync(join(tmpdir(), "agentowl-ingress-"));
const logLines: string[] = [];
let app: App;
const call = apiCaller(() => app.url, BOOTSTRAP);

const WHSEC = `whsec_${Buffer.from("standard-webhooks-test-secret-32b").toString("base64")}`;
const GITHUB = "It's a Secret to Everybody";
const LAN = "lan-hmac-secret-value-0123456789";
const TOKEN = "lan-bearer-token-abcdefghijklmnop";
const SECRETS = { hooks: WHSEC, github: GITHUB, lan: LAN, token: TOKEN };
const telnyxKeys = generateKeyPairSync("ed25519");
const TELNYX_PUBLIC = (telnyxKeys.publicKey.export({ format: "der", type: "spki" }) as Buffer)
  .subarray(-32)
  .toString("base64");

async function start(name: string, env: Record<string, string> = {}): Promise<App> {
  const config = loopbackConfig(root, BOOTSTRAP, env, join(root, name));
  return startApp({
    config,
    log: createLogger({ level: "debug", redactor: new Redactor(), sink: (l) => logLines.push(l) }),
  });
}

const post = (path: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
  fetch(`${app.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

const hook = (binding: string) => `/ingress/webhook/beta/${binding}`;

function standardHeaders(id: string, body: string, at = new Date()): Record<string, string> {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": new Webhook(WHSEC).sign(id, at, body),
  };
}

function telnyxHeaders(body: string, at = Math.floor(Date.now() / 1000)): Record<string, string> {
  const signature = edSign(null, Buffer.from(`${at}|${body}`), telnyxKeys.privateKey).toString("base64");
  return { "telnyx-signature-ed25519": signature, "telnyx-timestamp": String(at) };
}

/**
 * A POST from a chosen local address (127.0.0.2, …): fetch cannot bind its socket, node:http can.
 * The loopback network is all of 127.0.0.0/8, so the appliance sees that address as the sender.
 */
function postFrom(
  localAddress: string,
  url: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: "POST",
        localAddress,
        headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const eventCount = () =>
  (sqliteOf(app).handle.sqlite.query("SELECT count(*) AS n FROM events").get() as { n: number }).n;

beforeAll(async () => {
  app = await start("main");
  expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
  for (const [name, value] of Object.entries(SECRETS))
    expect((await call("PUT", `/v1/tenants/beta/secrets/${name}`, { body: { value } })).status).toBe(201);
  const bindings = [
    {
      name: "hooks",
      type: "webhook",
      verify: { scheme: "standard-webhooks", secret: "vault:beta/hooks" },
      require_json: true,
      max_body_bytes: 4096,
    },
    { name: "github", type: "webhook", verify: { scheme: "github-hmac-sha256", secret: "vault:beta/github" } },
    {
      name: "lan",
      type: "webhook",
      verify: { scheme: "hmac-sha256", secret: "vault:beta/lan", header: "X-Signature", encoding: "base64" },
    },
    { name: "token", type: "webhook", verify: { scheme: "bearer", secret: "vault:beta/token" } },
    { name: "open", type: "webhook", verify: { scheme: "none" } },
    { name: "limited", type: "webhook", verify: { scheme: "none" }, rate_per_minute: 2 },
    {
      name: "sms",
      type: "telnyx",
      numbers: ["+15557654321", "+13125550199"],
      verify: { scheme: "telnyx-ed25519", public_key: TELNYX_PUBLIC },
    },
  ];
  for (const b of bindings) {
    const r = await call("POST", "/v1/tenants/beta/bindings", { body: b });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("standard-webhooks", () => {
  test("a payload signed by the standardwebhooks library is 202 {id} after commit; the event keeps the body", async () => {
    const body = JSON.stringify({ type: "invoice.paid", amount: 4200 });
    const r = await post(hook("hooks"), body, standardHeaders("msg_std_1", body));
    expect(r.status).toBe(202);
    const { id } = (await r.json()) as { id: string };
    expect(id).toMatch(/^evt_[0-9A-Z]{26}$/);
    const event = (await call("GET", `/v1/events/${id}`)).body;
    expect(event).toMatchObject({
      type: "webhook.received",
      tenant: "beta",
      channel: "webhook",
      idempotency_key: "msg_std_1",
      source: { binding: "hooks", scheme: "standard-webhooks" },
    });
    expect(event.data).toMatchObject({
      content_type: "application/json",
      body,
      json: { type: "invoice.paid", amount: 4200 },
    });
    expect(event.trace.map((s: { name: string }) => s.name).slice(0, 3)).toEqual([
      "ingress.verify",
      "route",
      "ingress.commit",
    ]);
  });

  test("a repeat of a delivery id is 200 with the first event's id and stores nothing; concurrent repeats race to one event", async () => {
    const body = JSON.stringify({ n: 1 });
    const headers = standardHeaders("msg_std_dup", body);
    const first = await post(hook("hooks"), body, headers);
    const before = eventCount();
    const again = await post(hook("hooks"), body, headers);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ id: ((await first.json()) as { id: string }).id, duplicate: true });
    expect(eventCount()).toBe(before);

    const raceBody = JSON.stringify({ n: 2 });
    const raceHeaders = standardHeaders("msg_std_race", raceBody);
    const answers = await Promise.all(Array.from({ length: 12 }, () => post(hook("hooks"), raceBody, raceHeaders)));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses.filter((s) => s === 202)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(11);
    expect(new Set(await Promise.all(answers.map(async (a) => ((await a.json()) as { id: string }).id))).size).toBe(1);
  });

  test("tampered body, wrong secret, replayed old timestamp, missing headers: 401 problem+json that echoes nothing", async () => {
    const body = JSON.stringify({ amount: 1 });
    const good = standardHeaders("msg_std_bad", body);
    const other = new Webhook(`whsec_${Buffer.from("a-different-secret-of-32-bytes!!").toString("base64")}`);
    const old = new Date(Date.now() - 10 * 60_000);
    const cases: [string, string, Record<string, string>][] = [
      ["tampered", JSON.stringify({ amount: 1000 }), good],
      ["re-serialized", JSON.stringify({ amount: 1 }, null, 2), good],
      ["wrong secret", body, { ...good, "webhook-signature": other.sign("msg_std_bad", new Date(), body) }],
      ["old timestamp", body, standardHeaders("msg_std_bad", body, old)],
      ["missing signature", body, { "webhook-id": "x", "webhook-timestamp": good["webhook-timestamp"]! }],
    ];
    for (const [what, b, h] of cases) {
      const r = await post(hook("hooks"), b, h);
      expect(r.status, what).toBe(401);
      expect(r.headers.get("content-type")).toBe("application/problem+json");
      const text = await r.text();
      expect(text, what).not.toContain(WHSEC);
      expect(text, what).not.toContain(h["webhook-signature"] ?? "\u0000");
    }
  });

  test("413 over the binding's limit; 415 when it takes JSON and gets something else; a truncated body stores nothing", async () => {
    const big = JSON.stringify({ pad: "x".repeat(5000) });
    expect((await post(hook("hooks"), big, standardHeaders("msg_big", big))).status).toBe(413);
    const form = "a=1&b=2";
    const r = await post(hook("hooks"), form, {
      ...standardHeaders("msg_form", form),
      "content-type": "application/x-www-form-urlencoded",
    });
    expect(r.status).toBe(415);
    expect(((await r.json()) as { type: string }).type).toContain("unsupported");

    const before = eventCount();
    const answered = { method: "POST", route: "/ingress/webhook/:tenant/:binding" };
    const answeredBefore = await metric(app.metrics, "agentowl_http_requests_total", answered);
    const port = Number(new URL(app.url).port);
    await new Promise<void>((resolve) => {
      const s = connect({ host: "127.0.0.1", port }, () => {
        s.write(
          `POST ${hook("open")} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nonly part of it`,
        );
        // The subject: a client that sends part of its body, waits a moment, and goes away.
        setTimeout(() => s.destroy(), 100);
      });
      s.on("close", () => resolve());
      s.on("error", () => resolve());
    });
    // The server has finished with the request (counted on /metrics): it stored what it ever would.
    await until(
      "the cut request counted",
      async () => (await metric(app.metrics, "agentowl_http_requests_total", answered)) > answeredBefore,
    );
    expect(eventCount()).toBe(before);
  });
});

describe("other schemes", () => {
  test("github-hmac-sha256 signed by @octokit/webhooks-methods; X-GitHub-Delivery is the idempotency key", async () => {
    const body = JSON.stringify({ action: "opened", number: 7 });
    const headers = {
      "x-hub-signature-256": await githubSign(GITHUB, body),
      "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
      "x-github-event": "pull_request",
    };
    const r = await post(hook("github"), body, headers);
    expect(r.status).toBe(202);
    const event = (await call("GET", `/v1/events/${((await r.json()) as { id: string }).id}`)).body;
    expect(event.idempotency_key).toBe("72d3162e-cc78-11e3-81ab-4c9367dc0958");
    expect(event.source.headers["x-github-event"]).toBe("pull_request");
    expect((await post(hook("github"), body, headers)).status).toBe(200);
    expect(
      (await post(hook("github"), body, { ...headers, "x-hub-signature-256": await githubSign("wrong", body) })).status,
    ).toBe(401);
  });

  test("hmac-sha256 in a named header (base64), bearer in constant time; an Idempotency-Key header de-duplicates", async () => {
    const body = "temperature=21.5";
    const sig = createHmac("sha256", LAN).update(body).digest("base64");
    const headers = {
      "content-type": "application/x-www-form-urlencoded",
      "x-signature": sig,
      "idempotency-key": "reading-1",
    };
    const ok = await post(hook("lan"), body, headers);
    expect(ok.status).toBe(202);
    expect((await post(hook("lan"), body, headers)).status).toBe(200);
    expect(
      (
        await post(hook("lan"), body, {
          ...headers,
          "x-signature": createHmac("sha256", LAN).update(body).digest("hex"),
        })
      ).status,
    ).toBe(401);

    expect((await post(hook("token"), "{}", { authorization: `Bearer ${TOKEN}` })).status).toBe(202);
    for (const bad of [`Bearer ${TOKEN}x`, "Bearer short", TOKEN, ""])
      expect((await post(hook("token"), "{}", { authorization: bad })).status).toBe(401);
    // The bearer token is a credential: it is never copied into the event.
    const events = (await call("GET", "/v1/events?tenant=beta&limit=100")).body.items;
    expect(JSON.stringify(events)).not.toContain(TOKEN);
  });

  test("none: form, text and binary bodies are kept byte-exact (base64 where not UTF-8)", async () => {
    const binary = new Uint8Array([0, 255, 1, 254, 0x80, 0x81, 10, 13]);
    const r1 = await post(hook("open"), binary, { "content-type": "application/octet-stream" });
    expect(r1.status).toBe(202);
    const e1 = (await call("GET", `/v1/events/${((await r1.json()) as { id: string }).id}`)).body;
    expect(Buffer.from(e1.data.body_base64, "base64")).toEqual(Buffer.from(binary));
    const text = "line one\r\nline two\twith tab  \n";
    const r2 = await post(hook("open"), text, { "content-type": "text/plain; charset=utf-8" });
    const e2 = (await call("GET", `/v1/events/${((await r2.json()) as { id: string }).id}`)).body;
    expect(e2.data.body).toBe(text);
    expect(e2.data.json).toBeUndefined();
  });

  test("unknown tenant and unknown binding are the same 404; a non-webhook binding is not a webhook endpoint", async () => {
    const bodies = [];
    for (const path of [
      "/ingress/webhook/nosuch/hooks",
      "/ingress/webhook/beta/nosuch",
      "/ingress/webhook/beta/sms",
      "/ingress/webhook/BAD!/x",
    ]) {
      const r = await post(path, "{}");
      expect(r.status, path).toBe(404);
      bodies.push(((await r.json()) as { detail: string }).detail);
    }
    expect(new Set(bodies).size).toBe(1);
  });

  test("past the binding's rate: 429 with Retry-After", async () => {
    expect((await post(hook("limited"), "{}")).status).toBe(202);
    expect((await post(hook("limited"), "{}")).status).toBe(202);
    const r = await post(hook("limited"), "{}");
    expect(r.status).toBe(429);
    expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });
});

describe("delivery ids", () => {
  test("two ids that share their first 200 characters are two events, each keeping its whole id; a repeat of either is 200 with its first id", async () => {
    const prefix = `msg_${"p".repeat(196)}`;
    const ids = [`${prefix}-first`, `${prefix}-second`];
    const created: string[] = [];
    for (const id of ids) {
      const body = JSON.stringify({ id });
      const r = await post(hook("hooks"), body, standardHeaders(id, body));
      expect(r.status, id.slice(-6)).toBe(202);
      created.push(((await r.json()) as { id: string }).id);
    }
    expect(new Set(created).size).toBe(2);
    for (const [i, id] of ids.entries()) {
      const event = (await call("GET", `/v1/events/${created[i]}`)).body;
      expect(event.source.delivery_id).toBe(id);
      expect(event.idempotency_key).toMatch(/^sha256:[0-9a-f]{64}$/);
      const body = JSON.stringify({ id });
      const again = await post(hook("hooks"), body, standardHeaders(id, body));
      expect(again.status).toBe(200);
      expect(await again.json()).toEqual({ id: created[i], duplicate: true });
    }
    // An Idempotency-Key header (hmac-sha256 binding) is keyed the same way.
    const keys = [`${"k".repeat(200)}1`, `${"k".repeat(200)}2`];
    for (const key of keys) {
      const body = `reading=${key.slice(-1)}`;
      const r = await post(hook("lan"), body, {
        "content-type": "text/plain",
        "x-signature": createHmac("sha256", LAN).update(body).digest("base64"),
        "idempotency-key": key,
      });
      expect(r.status).toBe(202);
    }
  });

  test("an id over 1,024 bytes is 400 problem+json and stores nothing; a short id is still its own key", async () => {
    const before = eventCount();
    const long = `msg_${"x".repeat(1021)}`;
    const body = JSON.stringify({ n: 1 });
    const r = await post(hook("hooks"), body, standardHeaders(long, body));
    expect(r.status).toBe(400);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    expect(((await r.json()) as { detail: string }).detail).toContain("at most 1024 bytes");
    const lanBody = "x=1";
    const lan = await post(hook("lan"), lanBody, {
      "content-type": "text/plain",
      "x-signature": createHmac("sha256", LAN).update(lanBody).digest("base64"),
      "idempotency-key": "é".repeat(513),
    });
    expect(lan.status).toBe(400);
    expect(eventCount()).toBe(before);

    const exact = `msg_${"y".repeat(196)}`;
    const ok = await post(hook("hooks"), body, standardHeaders(exact, body));
    expect(ok.status).toBe(202);
    expect((await call("GET", `/v1/events/${((await ok.json()) as { id: string }).id}`)).body.idempotency_key).toBe(
      exact,
    );
  });
});

describe("headers kept in the event", () => {
  const SECRET_HEADERS = {
    "x-api-key": "api-key-canary-1",
    cookie: "session=cookie-canary-2",
    "set-cookie": "a=set-cookie-canary-3",
    "proxy-authorization": "Basic proxy-canary-4",
  };
  const headersOfEvent = async (r: Response) => {
    expect(r.status).toBe(202);
    return (await call("GET", `/v1/events/${((await r.json()) as { id: string }).id}`)).body.source.headers as Record<
      string,
      string
    >;
  };
  const expectRedacted = (headers: Record<string, string>, names: string[], canaries: string[]) => {
    for (const name of names) expect(headers[name], name).toBe("[redacted]");
    for (const canary of canaries) expect(JSON.stringify(headers)).not.toContain(canary);
    expect(headers["x-request-note"]).toBe("kept as sent");
  };
  const extra = { ...SECRET_HEADERS, "x-request-note": "kept as sent" };
  const always = Object.keys(SECRET_HEADERS);
  const canaries = Object.values(SECRET_HEADERS);

  test("standard-webhooks: the signature and every credential header by name only", async () => {
    const body = JSON.stringify({ h: 1 });
    const sent = standardHeaders("msg_headers_std", body);
    const headers = await headersOfEvent(await post(hook("hooks"), body, { ...sent, ...extra }));
    expectRedacted(headers, ["webhook-signature", ...always], [...canaries, sent["webhook-signature"]!]);
    expect(headers["webhook-id"]).toBe("msg_headers_std");
  });

  test("github-hmac-sha256: X-Hub-Signature-256 by name only", async () => {
    const body = JSON.stringify({ h: 2 });
    const signature = await githubSign(GITHUB, body);
    const headers = await headersOfEvent(
      await post(hook("github"), body, {
        "x-hub-signature-256": signature,
        "x-github-delivery": "headers-gh-1",
        ...extra,
      }),
    );
    expectRedacted(headers, ["x-hub-signature-256", ...always], [...canaries, signature]);
  });

  test("hmac-sha256: the binding's named header by name only", async () => {
    const body = "h=3";
    const signature = createHmac("sha256", LAN).update(body).digest("base64");
    const headers = await headersOfEvent(
      await post(hook("lan"), body, { "content-type": "text/plain", "x-signature": signature, ...extra }),
    );
    expectRedacted(headers, ["x-signature", ...always], [...canaries, signature]);
  });

  test("bearer: the token is redacted in its own header and in any other header it was also sent in", async () => {
    const headers = await headersOfEvent(
      await post(hook("token"), "{}", {
        authorization: `Bearer ${TOKEN}`,
        "x-auth-token": TOKEN,
        "x-forwarded-token": `token=${TOKEN}`,
        ...extra,
      }),
    );
    expectRedacted(headers, ["authorization", "x-auth-token", "x-forwarded-token", ...always], [...canaries, TOKEN]);
  });

  test("none: Authorization, X-Api-Key and cookies are still redacted", async () => {
    const headers = await headersOfEvent(
      await post(hook("open"), "{}", { authorization: "Bearer none-canary-5", ...extra }),
    );
    expectRedacted(headers, ["authorization", ...always], [...canaries, "none-canary-5"]);
  });
});

describe("failed verifications spend their sender's budget, not the binding's", () => {
  test("40 forged requests from 127.0.0.1, then the binding's real sender on 127.0.0.2 is still 202; the forger gets 429 before any verification", async () => {
    const forged = await start("forger", { AGENTOWL_INGRESS_AUTH_FAILURES_PER_ADDRESS: "30" });
    try {
      const api = apiCaller(() => forged.url, BOOTSTRAP);
      await api("POST", "/v1/tenants", { body: { name: "beta" } });
      await api("PUT", "/v1/tenants/beta/secrets/hooks", { body: { value: WHSEC } });
      expect(
        (
          await api("POST", "/v1/tenants/beta/bindings", {
            body: {
              name: "hooks",
              type: "webhook",
              verify: { scheme: "standard-webhooks", secret: "vault:beta/hooks" },
              rate_per_minute: 5,
            },
          })
        ).status,
      ).toBe(201);
      const url = `${forged.url}/ingress/webhook/beta/hooks`;
      const body = JSON.stringify({ amount: 1 });
      const statuses: number[] = [];
      for (let i = 0; i < 40; i++) {
        const headers = {
          ...standardHeaders(`forged_${i}`, body),
          "webhook-signature": `v1,${Buffer.alloc(32, i).toString("base64")}`,
        };
        statuses.push((await postFrom("127.0.0.1", url, body, headers)).status);
      }
      // 30 verified and refused, then the address is out of budget: no more verification for it.
      expect(statuses.slice(0, 30)).toEqual(Array(30).fill(401));
      expect(statuses.slice(30)).toEqual(Array(10).fill(429));
      const locked = await postFrom("127.0.0.1", url, body, standardHeaders("real_from_forger", body));
      expect(locked.status).toBe(429);
      expect(Number(locked.headers["retry-after"])).toBeGreaterThanOrEqual(1);
      expect(locked.body).toContain("failed verification");

      // The binding's budget (5 a minute) is untouched: its sender's five signed requests are taken.
      for (let i = 0; i < 5; i++) {
        const r = await postFrom("127.0.0.2", url, body, standardHeaders(`real_${i}`, body));
        expect(r.status, `signed request ${i}`).toBe(202);
      }
      const sixth = await postFrom("127.0.0.2", url, body, standardHeaders("real_5", body));
      expect(sixth.status).toBe(429);
      expect(sixth.body).toContain("for this binding");
      const sources = sqliteOf(forged)
        .handle.sqlite.query("SELECT json_extract(envelope, '$.source.remote_ip') AS ip FROM events")
        .all() as { ip: string }[];
      expect(sources.map((s) => s.ip)).toEqual(Array(5).fill("127.0.0.2"));
    } finally {
      await forged.stop();
    }
  });
});

describe("telnyx", () => {
  const payloads = join(CORPUS, "webhooks", "telnyx", "payloads");

  test.skipIf(!Bun.file(join(payloads, "message.received.sms.json")).size)(
    "message.received and call.* become sms.received and voice.call.* events of the number's tenant",
    async () => {
      const sms = readFileSync(join(payloads, "message.received.special-chars.json"), "utf8");
      const r = await post("/ingress/telnyx", sms, telnyxHeaders(sms));
      expect(r.status).toBe(202);
      const event = (await call("GET", `/v1/events/${((await r.json()) as { id: string }).id}`)).body;
      expect(event).toMatchObject({
        type: "sms.received",
        tenant: "beta",
        channel: "sms",
        idempotency_key: "test-id",
        source: { binding: "sms", provider: "telnyx" },
      });
      expect(event.data).toMatchObject({ from: "+15551234567", to: ["+15557654321"] });
      expect(event.data.text).toContain("中文 🚀");
      // The same Telnyx event again: 200, nothing new.
      expect((await post("/ingress/telnyx", sms, telnyxHeaders(sms))).status).toBe(200);

      const call1 = readFileSync(join(payloads, "call.initiated.json"), "utf8");
      const to = JSON.parse(call1).data.payload.to as string;
      await apiCaller(() => app.url, BOOTSTRAP)("PATCH", "/v1/tenants/beta/bindings/sms", {
        body: { numbers: ["+15557654321", to] },
      });
      const rc = await post("/ingress/telnyx", call1, telnyxHeaders(call1));
      expect(rc.status).toBe(202);
      const ce = (await call("GET", `/v1/events/${((await rc.json()) as { id: string }).id}`)).body;
      expect(ce).toMatchObject({ type: "voice.call.initiated", channel: "voice", data: { to } });
    },
  );

  test("a signed message is 202; bad signature or stale timestamp 401; an unknown number 404; an event type it does not take is 200 ignored", async () => {
    const body = JSON.stringify({
      data: {
        id: "t-1",
        event_type: "message.received",
        payload: { from: "+15550000001", to: "+15557654321", text: "hi" },
      },
    });
    // The same message, signed by the binding's key: accepted (this test needs no corpus file).
    const accepted = await post("/ingress/telnyx", body, telnyxHeaders(body));
    expect(accepted.status).toBe(202);
    expect((await call("GET", `/v1/events/${((await accepted.json()) as { id: string }).id}`)).body).toMatchObject({
      type: "sms.received",
      data: { from: "+15550000001", text: "hi" },
    });
    const forged = {
      ...telnyxHeaders(body),
      "telnyx-signature-ed25519": edSign(null, Buffer.from("x"), generateKeyPairSync("ed25519").privateKey).toString(
        "base64",
      ),
    };
    expect((await post("/ingress/telnyx", body, forged)).status).toBe(401);
    expect((await post("/ingress/telnyx", body, telnyxHeaders(body, Math.floor(Date.now() / 1000) - 600))).status).toBe(
      401,
    );
    const other = body.replace("+15557654321", "+15559999999");
    expect((await post("/ingress/telnyx", other, telnyxHeaders(other))).status).toBe(404);
    const sent = JSON.stringify({
      data: { id: "t-2", event_type: "message.sent", payload: { to: [{ phone_number: "+15557654321" }] } },
    });
    const r = await post("/ingress/telnyx", sent, telnyxHeaders(sent));
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ ignored: "message.sent" });
    expect((await post("/ingress/telnyx", "not json", telnyxHeaders("not json"))).status).toBe(400);
  });
});

describe("backpressure and observability", () => {
  test("over the queue's high-water mark: 503 with Retry-After, and nothing stored", async () => {
    const busy = await start("busy", { AGENTOWL_INGRESS_QUEUE_HIGH_WATER: "3" });
    try {
      const api = apiCaller(() => busy.url, BOOTSTRAP);
      await api("POST", "/v1/tenants", { body: { name: "beta" } });
      await api("POST", "/v1/tenants/beta/bindings", {
        body: { name: "open", type: "webhook", verify: { scheme: "none" } },
      });
      // Jobs no worker here takes: a backlog.
      for (let i = 0; i < 3; i++) await busy.storage.queue.enqueue({ kind: "test.backlog", payload: null });
      const send = () => fetch(`${busy.url}/ingress/webhook/beta/open`, { method: "POST", body: "{}" });
      // The depth is sampled in the background: the first request starts a sample, and one of
      // the next ones is the first to see the backlog.
      let r = await send();
      await until("a request refused", async () => (r = await send()).status !== 202);
      expect(r.status).toBe(503);
      expect(r.headers.get("retry-after")).toBe("5");
    } finally {
      await busy.stop();
    }
  });

  test("every attempt is counted on /metrics; refusals are logged with their reason and never a secret", async () => {
    const text = await (await fetch(`${app.url}/metrics`)).text();
    for (const outcome of [
      "accepted",
      "duplicate",
      "unauthenticated",
      "not_found",
      "too_large",
      "unsupported_media_type",
      "rate_limited",
    ]) {
      expect(text).toMatch(
        new RegExp(`agentowl_ingress_requests_total\\{channel="webhook",outcome="${outcome}"\\} [1-9]`),
      );
    }
    expect(text).toMatch(/agentowl_ingress_requests_total\{channel="telnyx",outcome="accepted"\} [1-9]/);
    const refusals = logLines.filter((l) => l.includes('"ingress refused"'));
    expect(refusals.some((l) => l.includes('"why":"bad_signature"') || l.includes('"why":"stale_timestamp"'))).toBe(
      true,
    );
    for (const secret of Object.values(SECRETS)) expect(logLines.join("\n")).not.toContain(secret);
  });
});
