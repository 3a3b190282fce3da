/**
 * Hostile webhook requests (guarantee 9, docs/guarantees.md) against a real `agentowl serve`: forged and mangled
 * signatures, huge and duplicated headers, invalid UTF-8, deeply nested JSON, and 50 concurrent
 * copies of one delivery id. Never a 5xx (503 only with Retry-After), every refusal problem+json
 * with its documented status, exactly one event per delivery id, forged traffic never spending
 * the verified traffic's rate budget, and no event-loop stall over 250 ms.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHmac, generateKeyPairSync, sign as edSign } from "node:crypto";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { Webhook } from "standardwebhooks";
import { expectProblem, type Family, HostileServer, mutate, seeded, suiteTimer } from "../helpers/hostile.ts";

setDefaultTimeout(90_000);

const rnd = seeded("webhook");
const done = suiteTimer("webhook");
const WHSEC = `whsec_${Buffer.from("hostile-standard-webhooks-secret!").toString("base64")}`;
const TOKEN = "hostile-bearer-token-0123456789abcdef";
const telnyx = generateKeyPairSync("ed25519");
const TELNYX_PUBLIC = (telnyx.publicKey.export({ format: "der", type: "spki" }) as Buffer)
  .subarray(-32)
  .toString("base64");
let hs: HostileServer;

beforeAll(async () => {
  hs = await HostileServer.start("webhook");
  const call = hs.call;
  expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
  for (const [name, value] of [
    ["hooks", WHSEC],
    ["token", TOKEN],
  ])
    expect((await call("PUT", `/v1/tenants/beta/secrets/${name}`, { body: { value } })).status).toBe(201);
  const bindings = [
    {
      name: "hooks",
      type: "webhook",
      verify: { scheme: "standard-webhooks", secret: "vault:beta/hooks" },
      require_json: true,
    },
    {
      name: "limited",
      type: "webhook",
      verify: { scheme: "standard-webhooks", secret: "vault:beta/hooks" },
      rate_per_minute: 30,
    },
    { name: "token", type: "webhook", verify: { scheme: "bearer", secret: "vault:beta/token" } },
    { name: "open", type: "webhook", verify: { scheme: "none" } },
    {
      name: "sms",
      type: "telnyx",
      numbers: ["+15557654321"],
      verify: { scheme: "telnyx-ed25519", public_key: TELNYX_PUBLIC },
    },
  ];
  for (const b of bindings) {
    const r = await call("POST", "/v1/tenants/beta/bindings", { body: b });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
});

afterAll(async () => {
  await hs?.close();
  done();
});

/**
 * A signature header mutated so that it no longer carries the valid signature: a mutation that
 * only adds (a space and bytes after the signature, say) leaves a header the spec accepts, since
 * it is a space-separated list of which one valid entry is enough. (A signature written another
 * way that decodes to the same bytes, its `=` dropped, is refused: the verifier takes only the
 * canonical base64, as the official libraries do.)
 */
function mutatedSignature(valid: string): string {
  for (;;) {
    const header = Buffer.from(mutate(rnd, Buffer.from(valid)))
      .toString("latin1")
      .replace(/[^\x20-\x7e]/g, "A");
    if (!header.split(" ").includes(valid)) return header;
  }
}

/** Standard Webhooks headers over raw bytes (the package signs strings, which re-encodes invalid UTF-8). */
function signedBytes(id: string, bytes: Uint8Array): Record<string, string> {
  const ts = Math.floor(Date.now() / 1000);
  const mac = createHmac("sha256", Buffer.from(WHSEC.slice("whsec_".length), "base64"))
    .update(Buffer.concat([Buffer.from(`${id}.${ts}.`), bytes]))
    .digest("base64");
  return { "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": `v1,${mac}` };
}

function signed(id: string, body: string, at = new Date()): Record<string, string> {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": new Webhook(WHSEC).sign(id, at, body),
  };
}

interface Answer {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/**
 * Each test sends from its own loopback address: the ingress counts failed verifications per
 * source address (ingress_auth_failures_per_address) and locks a forging address out with 429,
 * so one family's forgeries must not lock the next family's signed requests out.
 */
let lastOctet = 10;
let source = "127.0.0.10";
const freshSource = () => (source = `127.0.0.${++lastOctet}`);

/** A POST from `from` (node:http, which can bind the client's address; fetch cannot). */
function post(
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
  from = source,
): Promise<Answer> {
  const url = new URL(`${hs.url}${path}`);
  const bytes = typeof body === "string" ? Buffer.from(body) : Buffer.from(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: Number(url.port),
        path: url.pathname,
        method: "POST",
        localAddress: from,
        headers: { "content-type": "application/json", ...headers, "content-length": String(bytes.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown = text;
          try {
            json = JSON.parse(text);
          } catch {}
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") h.set(k, v);
          resolve({ status: res.statusCode ?? 0, headers: h, body: json, text });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(bytes);
  });
}

/** Never a 5xx but a 503 with Retry-After; a refusal is problem+json unless Bun's parser refused the head (431/400 before any route). */
function expectNoServerError(r: Answer, what: string, fam: Family): void {
  fam.saw(r.status);
  if (r.status === 503) expect(r.headers.get("retry-after"), `${what}: 503 without Retry-After`).not.toBeNull();
  else expect(r.status, `${what}: ${r.text.slice(0, 300)}`).toBeLessThan(500);
  if (r.status >= 400 && r.status !== 431) expectProblem(r, what);
}

/** One raw HTTP/1.1 request (duplicated headers exactly as written); the status code, or 0 when the server just closed. */
function rawRequest(head: string, body: Uint8Array = new Uint8Array()): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(hs.url);
  return new Promise((resolve) => {
    const s = connect({ host: hostname, port: Number(port) });
    let text = "";
    s.setEncoding("latin1");
    s.on("data", (d: string) => {
      text += d;
      // One response is enough: the answer's head and, when it says how long, its body.
      const m = /\r\ncontent-length: (\d+)/i.exec(text);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0 && (!m || text.length >= end + 4 + Number(m[1]))) s.destroy();
    });
    s.on("error", () => {});
    s.on("close", () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
    s.write(head);
    s.write(body);
  });
}

describe("webhook requests under attack", () => {
  beforeEach(() => void freshSource());

  test("forged, mangled, stale and missing signatures are 401 problem+json and store nothing", async () => {
    const fam = await hs.family("webhook: forged signatures");
    const before = (await hs.call("GET", "/v1/events?tenant=beta&limit=500")).body.items.length;
    const body = JSON.stringify({ action: "opened", n: 1 });
    for (let i = 0; i < 150; i++) {
      const good = signed(`forged-${i}`, body);
      const variants: [string, Record<string, string>][] = [
        [
          "other secret",
          {
            ...good,
            "webhook-signature": new Webhook(
              `whsec_${Buffer.from("not-the-secret-at-all-0123456789").toString("base64")}`,
            ).sign(`forged-${i}`, new Date(), body),
          },
        ],
        ["mutated signature", { ...good, "webhook-signature": mutatedSignature(good["webhook-signature"]!) }],
        ["no signature", { "webhook-id": good["webhook-id"]!, "webhook-timestamp": good["webhook-timestamp"]! }],
        ["stale", signed(`forged-${i}`, body, new Date(Date.now() - 3600_000))],
        ["future", signed(`forged-${i}`, body, new Date(Date.now() + 3600_000))],
        ["timestamp not a number", { ...good, "webhook-timestamp": "1e99" }],
        ["v2 scheme", { ...good, "webhook-signature": good["webhook-signature"]!.replace("v1,", "v2,") }],
        [
          "many signatures",
          {
            ...good,
            "webhook-signature": Array.from(
              { length: 200 },
              () => `v1,${Buffer.from(rnd.bytes(32)).toString("base64")}`,
            ).join(" "),
          },
        ],
        ["id swapped", { ...good, "webhook-id": `other-${i}` }],
      ];
      const [what, headers] = rnd.pick(variants);
      fam.try(what);
      // 25 from each address: under its failure budget, so that every one is verified (and refused).
      if (i % 25 === 0) freshSource();
      const r = await post("/ingress/webhook/beta/hooks", body, headers);
      expectNoServerError(r, what, fam);
      expect(r.status, `${what}: ${r.text}`).toBe(401);
    }
    // Bearer, with the token in the wrong place or mangled.
    for (const [what, headers] of [
      ["bearer: wrong token", { authorization: "Bearer nope" }],
      ["bearer: token in another header", { "x-api-key": TOKEN }],
      ["bearer: basic scheme", { authorization: `Basic ${btoa(`x:${TOKEN}`)}` }],
      ["bearer: token with a suffix", { authorization: `Bearer ${TOKEN}x` }],
    ] as [string, Record<string, string>][]) {
      fam.try(what);
      const r = await post("/ingress/webhook/beta/token", body, headers);
      expectNoServerError(r, what, fam);
      expect(r.status, what).toBe(401);
    }
    expect((await hs.call("GET", "/v1/events?tenant=beta&limit=500")).body.items.length).toBe(before);
    await fam.end();
  });

  test("unsigned requests do not spend the binding's budget: after 40 forged POSTs a signed one is taken", async () => {
    const fam = await hs.family("webhook: forged traffic against the rate budget");
    const body = JSON.stringify({ budget: true });
    const forger = source;
    const answers: number[] = [];
    for (let i = 0; i < 40; i++) {
      fam.try("forged");
      const r = await post(
        "/ingress/webhook/beta/limited",
        body,
        {
          "webhook-id": `b-${i}`,
          "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
          "webhook-signature": "v1,AAAA",
        },
        forger,
      );
      expectNoServerError(r, "forged against the budget", fam);
      if (r.status === 429) expect(r.headers.get("retry-after")).not.toBeNull();
      answers.push(r.status);
    }
    // The forger's own address is locked out after its failures (30 a minute by default)...
    expect(answers.slice(0, 30).every((s) => s === 401)).toBe(true);
    expect(answers.slice(30).every((s) => s === 429)).toBe(true);
    // ...and the binding's budget for verified traffic was not touched: a signed one from elsewhere goes in.
    fam.try("signed");
    const r = await post("/ingress/webhook/beta/limited", body, signed(`budget-${rnd.int(1e9)}`, body), freshSource());
    expectNoServerError(r, "signed after forged", fam);
    await fam.end();
    expect(r.status, r.text).toBe(202);
  });

  test("huge, numerous and duplicated headers are refused or ignored, never a 5xx", async () => {
    const fam = await hs.family("webhook: huge and duplicated headers");
    const body = JSON.stringify({ headers: true });
    const { host } = new URL(hs.url);
    const cases: [string, string][] = [
      ["a 1 MB header", `x-big: ${"b".repeat(1024 * 1024)}\r\n`],
      ["a 64 KiB header", `x-big: ${"b".repeat(64 * 1024)}\r\n`],
      ["2,000 headers", Array.from({ length: 2000 }, (_, i) => `x-h${i}: ${i}\r\n`).join("")],
      ["duplicated webhook-id", "webhook-id: dup-a\r\nwebhook-id: dup-b\r\n"],
      ["duplicated signature", "webhook-signature: v1,AAAA\r\nwebhook-signature: v1,BBBB\r\n"],
      ["duplicated content-length", `content-length: ${body.length}\r\ncontent-length: ${body.length + 5}\r\n`],
      ["duplicated content-type", "content-type: text/plain\r\ncontent-type: application/json\r\n"],
      ["header with NUL", "x-nul: a\0b\r\n"],
      ["header with bare CR", "x-cr: a\rb\r\n"],
      ["obs-fold", "x-fold: a\r\n b\r\n"],
      ["invalid UTF-8 header", "x-utf: \xff\xfe\xc3\x28\r\n"],
    ];
    for (const [what, extra] of cases) {
      for (const path of ["/ingress/webhook/beta/hooks", "/ingress/webhook/beta/open"]) {
        fam.try(what);
        const hasLength = extra.includes("content-length");
        const head =
          `POST ${path} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: ` +
          `application/json\r\n${hasLength ? "" : `content-length: ${body.length}\r\n`}${extra}connection: close\r\n\r\n`;
        const r = await rawRequest(head, new TextEncoder().encode(body));
        fam.saw(r.status || "closed");
        if (r.status === 503) expect(r.text.toLowerCase()).toContain("retry-after");
        else expect(r.status, `${what} at ${path}: ${r.text.slice(0, 300)}`).toBeLessThan(500);
        if (r.status >= 400 && r.status !== 431 && r.status !== 400)
          expect(r.text.toLowerCase(), `${what}: problem+json`).toContain("application/problem+json");
      }
    }
    await fam.end();
  });

  test("invalid UTF-8 and non-JSON bodies: a JSON binding answers 400 problem+json, an open binding stores the bytes", async () => {
    const fam = await hs.family("webhook: invalid UTF-8 bodies");
    for (let i = 0; i < 60; i++) {
      const valid = new TextEncoder().encode(JSON.stringify({ text: "héllo wörld", i }));
      const bytes = rnd.int(2)
        ? mutate(rnd, valid, 3)
        : Buffer.concat([
            valid.subarray(0, 5),
            Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]),
            valid.subarray(5),
          ]);
      const id = `utf-${i}-${rnd.int(1e9)}`;
      fam.try("JSON binding, signed");
      const a = await post("/ingress/webhook/beta/hooks", bytes, signedBytes(id, bytes));
      expectNoServerError(a, "invalid UTF-8 to the JSON binding", fam);
      // The signature covers the raw bytes: verified, they are 202 (still JSON) or 400 (not JSON any more).
      expect([202, 400]).toContain(a.status);
      fam.try("open binding");
      const b = await post("/ingress/webhook/beta/open", bytes, {
        "content-type": rnd.pick(
          ["application/json", "text/plain; charset=utf-8", "application/octet-stream", "\xff/\xfe"].map((c) =>
            c.replace(/[^\x20-\x7e]/g, "x"),
          ),
        ),
      });
      expectNoServerError(b, "invalid UTF-8 to the open binding", fam);
      expect(b.status, b.text).toBe(202);
      expect((await hs.call("GET", `/v1/events/${b.body.id}`)).status).toBe(200);
    }
    await fam.end();
  });

  test("deeply nested JSON is refused with a 4xx problem+json, within the event-loop budget", async () => {
    const fam = await hs.family("webhook: deep JSON");
    for (const depth of [1_000, 10_000, 100_000, 400_000]) {
      for (const [open, close] of [
        ["[", "]"],
        ['{"a":', "}"],
      ]) {
        const body = open!.repeat(depth) + "1" + close!.repeat(depth);
        fam.try(`depth ${depth} ${open}`);
        const id = `deep-${depth}-${open}-${rnd.int(1e9)}`;
        const r = await post("/ingress/webhook/beta/hooks", body, signed(id, body));
        expectNoServerError(r, `deep JSON ${depth}`, fam);
        fam.try(`telnyx depth ${depth} ${open}`);
        const t = await post("/ingress/telnyx", body, {
          "telnyx-signature-ed25519": edSign(null, Buffer.from(`0|${body}`), telnyx.privateKey).toString("base64"),
          "telnyx-timestamp": "0",
        });
        expectNoServerError(t, `deep JSON ${depth} to telnyx`, fam);
      }
    }
    await fam.end();
  });

  test("50 concurrent copies of one delivery id make exactly one event: one 202, the others 200 with its id", async () => {
    const fam = await hs.family("webhook: 50 concurrent copies of one id");
    for (let round = 0; round < 3; round++) {
      const id = `concurrent-${round}-${rnd.int(1e9)}`;
      const body = JSON.stringify({ concurrent: round });
      const headers = signed(id, body);
      fam.try("copies", 50);
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => post("/ingress/webhook/beta/hooks", body, headers)),
      );
      for (const a of answers) expectNoServerError(a, "concurrent copy", fam);
      expect(answers.filter((a) => a.status === 202).length).toBe(1);
      expect(answers.filter((a) => a.status === 200).length).toBe(49);
      expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
      const events = (await hs.call("GET", "/v1/events?tenant=beta&limit=500")).body.items.filter(
        (e: any) => e.idempotency_key === id,
      );
      expect(events.length).toBe(1);
    }
    await fam.end();
  });

  test("two delivery ids that share their first 200 characters are two events", async () => {
    const fam = await hs.family("webhook: long delivery ids");
    const prefix = "p".repeat(200);
    const ids = [`${prefix}-first-${rnd.int(1e9)}`, `${prefix}-second-${rnd.int(1e9)}`];
    const answers: Answer[] = [];
    for (const id of ids) {
      const body = JSON.stringify({ id });
      fam.try("long id");
      const r = await post("/ingress/webhook/beta/hooks", body, signed(id, body));
      expectNoServerError(r, "long id", fam);
      answers.push(r);
    }
    // Over the documented length, 400; else each its own event.
    const ok = answers.filter((a) => a.status === 202);
    if (ok.length) expect(ok.length, answers.map((a) => `${a.status} ${a.text}`).join("; ")).toBe(2);
    else for (const a of answers) expect(a.status).toBe(400);
    await fam.end();
  });
});
