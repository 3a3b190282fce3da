/**
 * The webhook signature verifiers against the corpus vectors (../shared/corpus/webhooks), against
 * requests signed by independent implementations (standardwebhooks, @octokit/webhooks-methods,
 * Node's Ed25519), and against every way a request or a binding can be wrong. Every verdict goes
 * through `check`, which holds each refusal to its promise: one line, no secret, no signature.
 * The twilio vectors of the corpus are out of scope: there is no twilio scheme.
 */
import { describe, expect, test } from "bun:test";
import { sign as signGithub } from "@octokit/webhooks-methods";
import { createHmac, generateKeyPairSync, randomBytes, sign as signEd25519, type KeyObject } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { ManualClock } from "../../core/clock.ts";
import { credentialHeaders, TOLERANCE_MS, verifyRequest, type VerifyConfig, type VerifyResult } from "./verify.ts";

const CORPUS = join(import.meta.dir, "..", "..", "..", "..", "shared", "corpus");
const HAVE_CORPUS = existsSync(join(CORPUS, "MANIFEST.json"));

const utf8 = (text: string) => new TextEncoder().encode(text);
const seconds = (ms: number) => String(Math.floor(ms / 1000));
const NOW = Date.UTC(2026, 10, 21, 14, 0, 0);

/** Header values and their parts (a list entry, what follows `v1,` or `sha256=`): none of them may show in a detail. */
function sentValues(headers: Headers | Record<string, string | undefined>): string[] {
  const values =
    headers instanceof Headers ? [...headers.values()] : Object.values(headers).filter((v): v is string => !!v);
  return values.flatMap((v) => [v, ...v.split(/[ ,=]/)]).filter((v) => v.length >= 8);
}

/** verifyRequest, asserting of a refusal that its detail is one line and carries neither the secret nor anything the request sent. */
function check(
  config: VerifyConfig,
  headers: Headers | Record<string, string | undefined>,
  body: Uint8Array,
  now?: number,
): VerifyResult {
  const result = verifyRequest(config, headers, body, now === undefined ? undefined : new ManualClock(now));
  if (!result.ok) {
    expect(result.detail).not.toMatch(/[\r\n]/);
    // The key material, with and without its prefix (a prefix alone hides nothing).
    const material = config.secret?.replace(/^wh(sec|pk|sk)_/, "") ?? "";
    const secrets = material.length >= 4 ? [config.secret!, material] : [];
    for (const hidden of [...secrets, ...sentValues(headers)]) expect(result.detail).not.toContain(hidden);
  }
  return result;
}

const reasonOf = (result: VerifyResult) => (result.ok ? "ok" : result.reason);

/** The raw 32 bytes of an Ed25519 public key, in base64 (what Telnyx shows; whpk_ adds its prefix). */
const rawBase64 = (key: KeyObject) => key.export({ format: "der", type: "spki" }).subarray(12).toString("base64");

// The corpus vectors

interface Vector {
  name: string;
  secret?: string;
  public_key?: string;
  headers: Record<string, string>;
  body?: string | null;
  body_file?: string;
  body_generator?: { repeat: string; count: number };
  verify_at?: number;
  expected: "valid" | "invalid";
}

/** The exact bytes: the string, the file (a path from the corpus root), or the repeated character. */
async function bodyOf(v: Vector): Promise<Uint8Array> {
  if (v.body_file) return Bun.file(join(CORPUS, v.body_file)).bytes();
  if (v.body_generator) return utf8(v.body_generator.repeat.repeat(v.body_generator.count));
  return utf8(v.body ?? "");
}

const CORPUS_FILES: { file: string; config: (v: Vector) => VerifyConfig }[] = [
  // A v1a vector carries the whpk_ key, which a binding holds as its secret.
  {
    file: "webhooks/standard-webhooks.json",
    config: (v) => ({ scheme: "standard-webhooks", secret: v.secret ?? v.public_key }),
  },
  { file: "webhooks/github.json", config: (v) => ({ scheme: "github-hmac-sha256", secret: v.secret }) },
  { file: "webhooks/telnyx/telnyx.json", config: (v) => ({ scheme: "telnyx-ed25519", publicKey: v.public_key }) },
];

for (const { file, config } of CORPUS_FILES) {
  const vectors: Vector[] = HAVE_CORPUS ? (await Bun.file(join(CORPUS, file)).json()).vectors : [];
  describe.skipIf(!HAVE_CORPUS)(`the vectors of ${file}, each at its verify_at`, () => {
    for (const v of vectors) {
      test(`${v.name} is ${v.expected}`, async () => {
        const body = await bodyOf(v);
        const now = v.verify_at === undefined ? undefined : v.verify_at * 1000;
        // As the route passes them (a Headers object) and as Elysia does (a record of lower-case names).
        const record = Object.fromEntries(
          Object.entries(v.headers).map(([name, value]) => [name.toLowerCase(), value]),
        );
        for (const headers of [new Headers(v.headers), record]) {
          const result = check(config(v), headers, body, now);
          if (v.expected === "valid") expect(result).toEqual({ ok: true, deliveryId: record["webhook-id"] ?? null });
          // A refusal for the binding's sake would pass an invalid vector for the wrong reason.
          else expect(reasonOf(result)).not.toBeOneOf(["ok", "misconfigured"]);
        }
      });
    }
  });
}

// Standard Webhooks

describe("standard-webhooks", () => {
  const secret = `whsec_${randomBytes(32).toString("base64")}`;
  const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
  const payload = '{"type":"contact.created","data":{"id":"1f81eb52"}}';
  const signed = (at = NOW, key = secret, body = payload) => ({
    "webhook-id": id,
    "webhook-timestamp": seconds(at),
    "webhook-signature": new Webhook(key).sign(id, new Date(at), body),
  });
  const config: VerifyConfig = { scheme: "standard-webhooks", secret };

  test("a request signed by the standardwebhooks library verifies, and its webhook-id is the delivery id", () => {
    expect(check(config, signed(), utf8(payload), NOW)).toEqual({ ok: true, deliveryId: id });
  });

  test("the secret works with its whsec_ prefix and as the bare base64", () => {
    const bare = secret.slice("whsec_".length);
    expect(check({ scheme: "standard-webhooks", secret: bare }, signed(), utf8(payload), NOW).ok).toBe(true);
    expect(check(config, signed(NOW, bare), utf8(payload), NOW).ok).toBe(true);
  });

  test("a tampered body or another secret is a bad signature", () => {
    expect(reasonOf(check(config, signed(), utf8(payload.replace("1f81eb52", "1f81eb53")), NOW))).toBe("bad_signature");
    const other = `whsec_${randomBytes(32).toString("base64")}`;
    expect(reasonOf(check(config, signed(NOW, other), utf8(payload), NOW))).toBe("bad_signature");
  });

  test("a request replayed later than 5 minutes, or dated as far ahead, is stale; 5 minutes either way is not", () => {
    expect(check(config, signed(NOW - TOLERANCE_MS), utf8(payload), NOW).ok).toBe(true);
    expect(check(config, signed(NOW + TOLERANCE_MS), utf8(payload), NOW).ok).toBe(true);
    expect(reasonOf(check(config, signed(NOW - TOLERANCE_MS - 1000), utf8(payload), NOW))).toBe("stale_timestamp");
    expect(reasonOf(check(config, signed(NOW + TOLERANCE_MS + 1000), utf8(payload), NOW))).toBe("stale_timestamp");
  });

  test("a webhook-timestamp that is not whole seconds is a bad timestamp", () => {
    for (const timestamp of ["hello", "1614265330.5", "-1614265330", "1e9", " 1614265330", "16142653301614265330"]) {
      expect(reasonOf(check(config, { ...signed(), "webhook-timestamp": timestamp }, utf8(payload), NOW))).toBe(
        "bad_timestamp",
      );
    }
  });

  test("without webhook-signature the request is unsigned; without webhook-id or webhook-timestamp it misses headers", () => {
    const { "webhook-signature": _, ...unsigned } = signed();
    expect(reasonOf(check(config, unsigned, utf8(payload), NOW))).toBe("missing_signature");
    expect(reasonOf(check(config, { ...signed(), "webhook-id": undefined }, utf8(payload), NOW))).toBe(
      "missing_headers",
    );
    expect(reasonOf(check(config, { ...signed(), "webhook-timestamp": "" }, utf8(payload), NOW))).toBe(
      "missing_headers",
    );
  });

  test("one valid signature among several suffices (a sender rotating its key signs with both)", () => {
    const both = `${signed(NOW, `whsec_${randomBytes(32).toString("base64")}`)["webhook-signature"]} v2,abc ${signed()["webhook-signature"]}`;
    expect(check(config, { ...signed(), "webhook-signature": both }, utf8(payload), NOW).ok).toBe(true);
    const none = `${signed(NOW, `whsec_${randomBytes(32).toString("base64")}`)["webhook-signature"]} v1,!!notbase64 v1,`;
    expect(reasonOf(check(config, { ...signed(), "webhook-signature": none }, utf8(payload), NOW))).toBe(
      "bad_signature",
    );
  });

  test("v1a: an Ed25519 signature (Node's crypto) verifies with the whpk_ public key, and v1 entries beside it are ignored", () => {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const timestamp = seconds(NOW);
    const v1a = `v1a,${signEd25519(null, Buffer.from(`${id}.${timestamp}.${payload}`), privateKey).toString("base64")}`;
    const headers = {
      "webhook-id": id,
      "webhook-timestamp": timestamp,
      "webhook-signature": `${signed()["webhook-signature"]} ${v1a}`,
    };
    const ed25519: VerifyConfig = { scheme: "standard-webhooks", secret: `whpk_${rawBase64(publicKey)}` };
    expect(check(ed25519, headers, utf8(payload), NOW)).toEqual({ ok: true, deliveryId: id });
    expect(reasonOf(check(ed25519, headers, utf8(`${payload} `), NOW))).toBe("bad_signature");
    // The HMAC secret cannot check a v1a signature, nor the public key a v1 one.
    expect(reasonOf(check(config, { ...headers, "webhook-signature": v1a }, utf8(payload), NOW))).toBe("bad_signature");
    expect(reasonOf(check(ed25519, signed(), utf8(payload), NOW))).toBe("bad_signature");
  });

  test("the body is verified as bytes, even when they are not UTF-8", () => {
    const body = Uint8Array.from([0x7b, 0xff, 0xfe, 0x00, 0x7d]);
    const key = Buffer.from(secret.slice("whsec_".length), "base64");
    const signature = createHmac("sha256", key)
      .update(`${id}.${seconds(NOW)}.`)
      .update(body)
      .digest("base64");
    const headers = { "webhook-id": id, "webhook-timestamp": seconds(NOW), "webhook-signature": `v1,${signature}` };
    expect(check(config, headers, body, NOW).ok).toBe(true);
    expect(reasonOf(check(config, headers, utf8(new TextDecoder().decode(body)), NOW))).toBe("bad_signature");
  });
});

// GitHub

describe("github-hmac-sha256", () => {
  const secret = "It's a Secret to Everybody";
  const payload = '{"action":"opened","number":1}';
  const config: VerifyConfig = { scheme: "github-hmac-sha256", secret };

  test("a request signed by @octokit/webhooks-methods verifies, and X-GitHub-Delivery is the delivery id", async () => {
    const headers = new Headers({
      "X-Hub-Signature-256": await signGithub(secret, payload),
      "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    });
    expect(check(config, headers, utf8(payload))).toEqual({
      ok: true,
      deliveryId: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    });
    headers.delete("X-GitHub-Delivery");
    expect(check(config, headers, utf8(payload))).toEqual({ ok: true, deliveryId: null });
  });

  test("a tampered body or another secret is a bad signature", async () => {
    const headers = { "x-hub-signature-256": await signGithub(secret, payload) };
    expect(reasonOf(check(config, headers, utf8(`${payload}\n`)))).toBe("bad_signature");
    expect(
      reasonOf(check(config, { "x-hub-signature-256": await signGithub("another secret", payload) }, utf8(payload))),
    ).toBe("bad_signature");
  });

  test("the legacy X-Hub-Signature (SHA-1) alone is not accepted, and the detail says so", () => {
    const sha1 = `sha1=${createHmac("sha1", secret).update(payload).digest("hex")}`;
    const result = check(config, { "x-hub-signature": sha1 }, utf8(payload));
    expect(reasonOf(result)).toBe("missing_signature");
    expect(!result.ok && result.detail).toContain("legacy X-Hub-Signature");
    expect(reasonOf(check(config, {}, utf8(payload)))).toBe("missing_signature");
  });
});

// HMAC-SHA256 of the body in a named header

describe("hmac-sha256", () => {
  const secret = "a shared secret of the LAN system";
  const payload = '{"door":"open"}';
  const digest = createHmac("sha256", secret).update(payload).digest();
  const hex: VerifyConfig = { scheme: "hmac-sha256", secret, header: "X-Signature" };
  const base64: VerifyConfig = { ...hex, encoding: "base64" };

  test("hex by default and base64 when configured, each with or without a sha256= prefix; the header's name is case-insensitive", () => {
    for (const value of [
      digest.toString("hex"),
      digest.toString("hex").toUpperCase(),
      `sha256=${digest.toString("hex")}`,
    ]) {
      expect(check(hex, { "x-signature": value }, utf8(payload))).toEqual({ ok: true, deliveryId: null });
    }
    for (const value of [digest.toString("base64"), `sha256=${digest.toString("base64")}`]) {
      expect(check(base64, new Headers({ "X-SIGNATURE": value }), utf8(payload))).toEqual({
        ok: true,
        deliveryId: null,
      });
    }
  });

  test("a signature in the other encoding, a tampered body or another secret is a bad signature", () => {
    expect(reasonOf(check(hex, { "x-signature": digest.toString("base64") }, utf8(payload)))).toBe("bad_signature");
    expect(reasonOf(check(base64, { "x-signature": digest.toString("hex") }, utf8(payload)))).toBe("bad_signature");
    expect(reasonOf(check(hex, { "x-signature": digest.toString("hex") }, utf8(`${payload} `)))).toBe("bad_signature");
    expect(
      reasonOf(check({ ...hex, secret: "another" }, { "x-signature": digest.toString("hex") }, utf8(payload))),
    ).toBe("bad_signature");
    expect(reasonOf(check(hex, { "x-signature": "sha256=" }, utf8(payload)))).toBe("bad_signature");
  });

  test("without the header the request is unsigned", () => {
    expect(reasonOf(check(hex, { "x-other": digest.toString("hex") }, utf8(payload)))).toBe("missing_signature");
  });
});

// Bearer

describe("bearer", () => {
  const secret = "tok_3f9a0c2e7b1d4a68";
  const config: VerifyConfig = { scheme: "bearer", secret };

  test("Authorization: Bearer <the secret> passes, the scheme name in any case", () => {
    for (const value of [`Bearer ${secret}`, `bearer ${secret}`, `BEARER  ${secret}`]) {
      expect(check(config, { authorization: value }, utf8(""))).toEqual({ ok: true, deliveryId: null });
    }
  });

  test("a wrong token, of the same length or not, is a bad signature", () => {
    for (const token of [secret.replace(/.$/, "9"), `${secret}0`, secret.slice(0, -1), "x"]) {
      expect(reasonOf(check(config, { authorization: `Bearer ${token}` }, utf8("")))).toBe("bad_signature");
    }
  });

  test("another kind of credential is a bad signature; no Authorization header, a missing one", () => {
    expect(
      reasonOf(check(config, { authorization: `Basic ${Buffer.from(`user:${secret}`).toString("base64")}` }, utf8(""))),
    ).toBe("bad_signature");
    expect(reasonOf(check(config, { authorization: secret }, utf8("")))).toBe("bad_signature");
    expect(reasonOf(check(config, { authorization: "Bearer " }, utf8("")))).toBe("bad_signature");
    expect(reasonOf(check(config, {}, utf8("")))).toBe("missing_signature");
  });

  test("a custom header carries the token itself", () => {
    const custom: VerifyConfig = { ...config, header: "X-Api-Token" };
    expect(check(custom, new Headers({ "X-Api-Token": secret }), utf8("")).ok).toBe(true);
    expect(reasonOf(check(custom, { "x-api-token": `Bearer ${secret}` }, utf8("")))).toBe("bad_signature");
    expect(reasonOf(check(custom, { authorization: `Bearer ${secret}` }, utf8("")))).toBe("missing_signature");
  });

  test("a header named like an Object method is looked up in the request, not in the prototype", () => {
    expect(reasonOf(check({ ...config, header: "toString" }, {}, utf8("")))).toBe("missing_signature");
    expect(check({ ...config, header: "toString" }, { tostring: secret }, utf8("")).ok).toBe(true);
  });
});

// None

test("none accepts any request, signed or not", () => {
  expect(check({ scheme: "none" }, {}, utf8("anything"))).toEqual({ ok: true, deliveryId: null });
  expect(check({ scheme: "none", secret: "ignored" }, { authorization: "Bearer wrong" }, utf8(""))).toEqual({
    ok: true,
    deliveryId: null,
  });
});

// Telnyx

describe("telnyx-ed25519", () => {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const payload = '{"data":{"event_type":"message.received","id":"b301ed3f-1490-491f-995f-6e64e69674d4"}}';
  const signed = (at = NOW, body = payload) => ({
    "telnyx-signature-ed25519": signEd25519(null, Buffer.from(`${seconds(at)}|${body}`), privateKey).toString("base64"),
    "telnyx-timestamp": seconds(at),
  });
  const config: VerifyConfig = { scheme: "telnyx-ed25519", publicKey: rawBase64(publicKey) };

  test("a request signed with Node's Ed25519 verifies with the key as base64 of its 32 bytes, as PEM, or as base64 DER", () => {
    const forms = [
      rawBase64(publicKey),
      ` ${rawBase64(publicKey)}\n`,
      publicKey.export({ format: "pem", type: "spki" }).toString(),
      publicKey.export({ format: "der", type: "spki" }).toString("base64"),
    ];
    for (const key of forms)
      expect(check({ ...config, publicKey: key }, signed(), utf8(payload), NOW)).toEqual({
        ok: true,
        deliveryId: null,
      });
  });

  test("a tampered body, another key or a changed timestamp is a bad signature", () => {
    expect(reasonOf(check(config, signed(), utf8(payload.replace("received", "sent")), NOW))).toBe("bad_signature");
    const other = generateKeyPairSync("ed25519").publicKey;
    expect(reasonOf(check({ ...config, publicKey: rawBase64(other) }, signed(), utf8(payload), NOW))).toBe(
      "bad_signature",
    );
    expect(reasonOf(check(config, { ...signed(), "telnyx-timestamp": seconds(NOW + 1000) }, utf8(payload), NOW))).toBe(
      "bad_signature",
    );
  });

  test("a signature replayed after 300 s, or dated as far ahead, is stale", () => {
    expect(check(config, signed(NOW - 300_000), utf8(payload), NOW).ok).toBe(true);
    expect(reasonOf(check(config, signed(NOW - 301_000), utf8(payload), NOW))).toBe("stale_timestamp");
    expect(reasonOf(check(config, signed(NOW + 301_000), utf8(payload), NOW))).toBe("stale_timestamp");
    expect(reasonOf(check(config, { ...signed(), "telnyx-timestamp": "soon" }, utf8(payload), NOW))).toBe(
      "bad_timestamp",
    );
  });

  test("a signature that is not base64 of 64 bytes is bad; a missing header is named", () => {
    const { "telnyx-signature-ed25519": signature, "telnyx-timestamp": timestamp } = signed();
    // The URL-safe variant only where the signature has a + or / to replace (about 1 in 16 has none).
    const variants = [signature.slice(0, 40), `${signature}AAAA`, signature.replace(/[+/]/g, "-"), "%%%%"].filter(
      (v) => v !== signature,
    );
    for (const bad of variants) {
      expect(
        reasonOf(check(config, { "telnyx-signature-ed25519": bad, "telnyx-timestamp": timestamp }, utf8(payload), NOW)),
      ).toBe("bad_signature");
    }
    expect(reasonOf(check(config, { "telnyx-timestamp": timestamp }, utf8(payload), NOW))).toBe("missing_signature");
    expect(reasonOf(check(config, { "telnyx-signature-ed25519": signature }, utf8(payload), NOW))).toBe(
      "missing_headers",
    );
  });
});

// Bindings that cannot verify

describe("a binding without what its scheme needs is misconfigured, whatever the request", () => {
  const { publicKey: rsa } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const cases: [string, VerifyConfig][] = [
    ["standard-webhooks without a secret", { scheme: "standard-webhooks" }],
    ["standard-webhooks with an empty secret", { scheme: "standard-webhooks", secret: "" }],
    [
      "standard-webhooks with a secret that is not base64",
      { scheme: "standard-webhooks", secret: "whsec_not base64!" },
    ],
    ["standard-webhooks with whsec_ and nothing after it", { scheme: "standard-webhooks", secret: "whsec_" }],
    [
      "standard-webhooks with the whsk_ signing key",
      { scheme: "standard-webhooks", secret: `whsk_${randomBytes(64).toString("base64")}` },
    ],
    [
      "standard-webhooks with a whpk_ key of 31 bytes",
      { scheme: "standard-webhooks", secret: `whpk_${randomBytes(31).toString("base64")}` },
    ],
    ["github-hmac-sha256 without a secret", { scheme: "github-hmac-sha256" }],
    ["hmac-sha256 without a secret", { scheme: "hmac-sha256", header: "x-signature" }],
    ["hmac-sha256 without a header", { scheme: "hmac-sha256", secret: "s3cr3t-value" }],
    ["bearer without a secret", { scheme: "bearer", header: "x-token" }],
    ["telnyx-ed25519 without a public key", { scheme: "telnyx-ed25519" }],
    [
      "telnyx-ed25519 with a key of 33 bytes",
      { scheme: "telnyx-ed25519", publicKey: randomBytes(33).toString("base64") },
    ],
    ["telnyx-ed25519 with a key that is not base64", { scheme: "telnyx-ed25519", publicKey: "not a key" }],
    [
      "telnyx-ed25519 with an RSA key in PEM",
      { scheme: "telnyx-ed25519", publicKey: rsa.export({ format: "pem", type: "spki" }).toString() },
    ],
    [
      "telnyx-ed25519 with a broken PEM",
      { scheme: "telnyx-ed25519", publicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" },
    ],
    ["an unknown scheme", { scheme: "twilio" as VerifyConfig["scheme"], secret: "s3cr3t-value" }],
  ];
  const request = {
    "webhook-id": "msg_1",
    "webhook-timestamp": seconds(NOW),
    "webhook-signature": "v1,AAAA",
    "x-hub-signature-256": `sha256=${"0".repeat(64)}`,
    "x-signature": "0".repeat(64),
    "x-token": "t",
    "telnyx-signature-ed25519": "AAAA",
    "telnyx-timestamp": seconds(NOW),
  };
  for (const [name, config] of cases) {
    test(name, () => {
      expect(reasonOf(check(config, request, utf8("{}"), NOW))).toBe("misconfigured");
    });
  }
});

// Never a throw

test("no header value makes any scheme throw; each is refused", () => {
  const { publicKey } = generateKeyPairSync("ed25519");
  const configs: VerifyConfig[] = [
    { scheme: "standard-webhooks", secret: `whsec_${randomBytes(24).toString("base64")}` },
    { scheme: "standard-webhooks", secret: `whpk_${rawBase64(publicKey)}` },
    { scheme: "github-hmac-sha256", secret: "s3cr3t-value" },
    { scheme: "hmac-sha256", secret: "s3cr3t-value", header: "x-signature" },
    { scheme: "hmac-sha256", secret: "s3cr3t-value", header: "x-signature", encoding: "base64" },
    { scheme: "bearer", secret: "s3cr3t-value" },
    { scheme: "telnyx-ed25519", publicKey: rawBase64(publicKey) },
  ];
  const junk = [
    "",
    " ",
    ",",
    "v1,",
    "v1a,",
    "v1a,AAAA",
    "v1,====",
    `v1a,${"A".repeat(86)}==`,
    "sha256=",
    "sha256=zz",
    "Bearer",
    "\u00e9\u0000",
    "=".repeat(5000),
    "A".repeat(100_000),
  ];
  const names = [
    "webhook-signature",
    "webhook-id",
    "webhook-timestamp",
    "x-hub-signature-256",
    "x-signature",
    "authorization",
    "telnyx-signature-ed25519",
    "telnyx-timestamp",
  ];
  for (const config of configs) {
    for (const value of junk) {
      const headers = {
        ...Object.fromEntries(names.map((n) => [n, value])),
        "webhook-timestamp": seconds(NOW),
        "telnyx-timestamp": seconds(NOW),
      };
      expect(check(config, headers, utf8(value), NOW).ok).toBe(false);
      expect(check(config, Object.fromEntries(names.map((n) => [n, value])), new Uint8Array(0), NOW).ok).toBe(false);
    }
  }
});

describe("credentialHeaders", () => {
  test("names the header each scheme reads its signature or token from, lower-case", () => {
    expect(credentialHeaders({ scheme: "standard-webhooks" })).toEqual(["webhook-signature"]);
    expect(credentialHeaders({ scheme: "github-hmac-sha256" })).toEqual(["x-hub-signature-256", "x-hub-signature"]);
    expect(credentialHeaders({ scheme: "hmac-sha256", header: "X-Signature" })).toEqual(["x-signature"]);
    expect(credentialHeaders({ scheme: "bearer" })).toEqual(["authorization"]);
    expect(credentialHeaders({ scheme: "bearer", header: "X-Token" })).toEqual(["x-token"]);
    expect(credentialHeaders({ scheme: "telnyx-ed25519" })).toEqual(["telnyx-signature-ed25519"]);
    expect(credentialHeaders({ scheme: "none" })).toEqual([]);
  });
});

describe("standard-webhooks signatures are compared as the official libraries compare them", () => {
  test(`a signature written another way that decodes to the same bytes (its = dropped, its unused bits set) is \
refused, by us and by the standardwebhooks package`, () => {
    const secret = `whsec_${Buffer.alloc(32, 9).toString("base64")}`;
    const id = "msg_canonical";
    // The real time: the standardwebhooks package checks the timestamp against its own clock.
    const at = new Date();
    const body = '{"a":1}';
    const good = new Webhook(secret).sign(id, at, body);
    const sig = good.slice("v1,".length);
    expect(sig.endsWith("=")).toBe(true);
    const last = sig.at(-2)!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // 32 bytes are 43 characters and a '=': the 43rd carries 4 bits and 2 unused ones.
    const sameBytes = alphabet[(alphabet.indexOf(last) & ~3) | ((alphabet.indexOf(last) + 1) & 3)]!;
    const headers = (signature: string) => ({
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
      "webhook-signature": signature,
    });
    const config: VerifyConfig = { scheme: "standard-webhooks", secret };
    const bytes = new TextEncoder().encode(body);
    const clock = new ManualClock(at.getTime());
    expect(verifyRequest(config, headers(good), bytes, clock).ok).toBe(true);
    for (const variant of [`v1,${sig.slice(0, -1)}`, `v1,${sig.slice(0, -2)}${sameBytes}=`]) {
      expect(Buffer.from(variant.slice(3), "base64").equals(Buffer.from(sig, "base64")), variant).toBe(true);
      expect(verifyRequest(config, headers(variant), bytes, clock).ok, variant).toBe(false);
      expect(() => new Webhook(secret).verify(body, headers(variant)), variant).toThrow();
    }
  });
});
