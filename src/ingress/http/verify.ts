/**
 * The signature checks of the HTTP webhook ingress (docs/api.md), one function per scheme: each takes
 * the request's headers and raw body and returns a verdict, and the route picks the status code.
 * docs/webhook-verification.md describes what each scheme expects from the binding and the sender.
 *
 * Pure: the clock is a parameter and nothing is cached, so a test replays a vector at its own
 * time. Whatever is derived from a secret is compared with timingSafeEqual on two buffers of the
 * same length (a bearer token is hashed first, so its length does not show either). No input makes
 * these functions throw: what cannot be decoded is a refusal, and a binding that lacks what its
 * scheme needs is "misconfigured". A refusal's detail goes to the log, so it names headers and
 * counts but never carries a header's value or the secret.
 */
import { createHash, createHmac, timingSafeEqual, verify as verifySignature, type KeyObject } from "node:crypto";
import { decodeBase64, ed25519Key, telnyxPublicKey } from "../../control/resources/public-key.ts";
import { type Clock, systemClock } from "../../core/clock.ts";
import { memoByText } from "../../core/memo.ts";

export type VerifyScheme =
  | "standard-webhooks"
  | "github-hmac-sha256"
  | "hmac-sha256"
  | "bearer"
  | "none"
  | "telnyx-ed25519";

export interface VerifyConfig {
  scheme: VerifyScheme;
  /** The value of the binding's secret (the route resolves the vault reference). */
  secret?: string;
  publicKey?: string;
  header?: string;
  encoding?: "hex" | "base64";
}

export type VerifyResult =
  | { ok: true; deliveryId: string | null }
  | {
      ok: false;
      reason:
        | "missing_signature"
        | "bad_signature"
        | "stale_timestamp"
        | "bad_timestamp"
        | "missing_headers"
        | "misconfigured";
      /** One line for the log: never the secret, never the signature. */
      detail: string;
    };

/** How far a signed timestamp may be from our clock, either way (Standard Webhooks and telnyx-node both use 5 minutes). */
export const TOLERANCE_MS = 5 * 60 * 1000;

type Refusal = Extract<VerifyResult, { ok: false }>;
/** A header's value by its lower-case name; an empty value counts as absent. */
type HeaderOf = (name: string) => string | undefined;

const refuse = (reason: Refusal["reason"], detail: string): Refusal => ({ ok: false, reason, detail });
const accept = (deliveryId: string | null): VerifyResult => ({ ok: true, deliveryId });

/**
 * headers: a Headers object or a record with lower-case names; body: the raw request bytes (a
 * re-serialized JSON body would not verify); clock: read once, for the timestamp schemes.
 */
export function verifyRequest(
  config: VerifyConfig,
  headers: Headers | Record<string, string | undefined>,
  body: Uint8Array,
  clock: Clock = systemClock,
): VerifyResult {
  const now = clock.now();
  // Own properties only: a header named like an Object method (toString) must not find the method.
  const header: HeaderOf = (name) =>
    (headers instanceof Headers ? headers.get(name) : Object.hasOwn(headers, name) ? headers[name] : undefined) ||
    undefined;
  switch (config.scheme) {
    case "standard-webhooks":
      return verifyStandardWebhook(config.secret, header, body, now);
    case "github-hmac-sha256":
      return verifyGithub(config.secret, header, body);
    case "hmac-sha256":
      return verifyBodyHmac(config, header, body);
    case "bearer":
      return verifyBearer(config, header);
    case "none":
      return accept(null);
    case "telnyx-ed25519":
      return verifyTelnyx(config.publicKey, header, body, now);
    default:
      return refuse("misconfigured", `unknown verify scheme ${JSON.stringify(config.scheme)}`);
  }
}

/**
 * The headers a scheme reads its credential from: a signature, or the token itself. The ingress
 * keeps their names in an event but never their values (a bearer token is the secret; a
 * signature is what a replay would need).
 */
export function credentialHeaders(config: Pick<VerifyConfig, "scheme" | "header">): string[] {
  switch (config.scheme) {
    case "standard-webhooks":
      return ["webhook-signature"];
    case "github-hmac-sha256":
      return ["x-hub-signature-256", "x-hub-signature"];
    case "hmac-sha256":
      return config.header ? [config.header.toLowerCase()] : [];
    case "bearer":
      return [(config.header ?? "authorization").toLowerCase()];
    case "telnyx-ed25519":
      return ["telnyx-signature-ed25519"];
    default:
      return [];
  }
}

// Standard Webhooks (https://www.standardwebhooks.com, spec/standard-webhooks.md)

/** The binding's secret: an HMAC key for v1 signatures, or an Ed25519 public key for v1a. */
type StandardWebhooksKey = { version: "v1"; hmacKey: Buffer } | { version: "v1a"; publicKey: KeyObject };

/**
 * Signed content `${webhook-id}.${webhook-timestamp}.${body}`. The header is a space-separated
 * list of `<version>,<base64>` so that a sender can sign with an old and a new key during a
 * rotation: one signature of our version that verifies is enough, the others are ignored.
 */
function verifyStandardWebhook(
  secret: string | undefined,
  header: HeaderOf,
  body: Uint8Array,
  now: number,
): VerifyResult {
  const key = standardWebhooksKey(secret);
  if ("ok" in key) return key;
  const signatures = header("webhook-signature");
  if (!signatures) return refuse("missing_signature", "no webhook-signature header");
  const id = header("webhook-id");
  const timestamp = header("webhook-timestamp");
  if (!id || !timestamp) return refuse("missing_headers", `no ${!id ? "webhook-id" : "webhook-timestamp"} header`);
  const stale = checkTimestamp("webhook-timestamp", timestamp, now);
  if (stale) return stale;

  const tag = key.version === "v1" ? "v1," : "v1a,";
  const candidates: string[] = [];
  for (const entry of signatures.split(" ")) if (entry.startsWith(tag)) candidates.push(entry.slice(tag.length));
  if (candidates.length === 0)
    return refuse(
      "bad_signature",
      `webhook-signature has no ${key.version} signature, the only kind the binding's ${key.version === "v1" ? "secret" : "public key"} checks`,
    );
  const prefix = `${id}.${timestamp}.`;
  if (key.version === "v1") {
    // Compared as text with the one way base64 writes the digest (canonicalBase64's rule, without decoding each candidate).
    const expected = Buffer.from(createHmac("sha256", key.hmacKey).update(prefix).update(body).digest("base64"));
    const matches = (text: string) => {
      const sent = Buffer.from(text);
      return sent.length === expected.length && timingSafeEqual(sent, expected);
    };
    if (candidates.some(matches)) return accept(id);
  } else {
    const signed = Buffer.concat([Buffer.from(prefix), body]);
    if (
      candidates.some((text) => {
        const signature = canonicalBase64(text);
        return signature?.length === 64 && verifySignature(null, signed, key.publicKey, signature);
      })
    )
      return accept(id);
  }
  return refuse(
    "bad_signature",
    `no ${key.version} signature in webhook-signature verifies (${candidates.length} tried)`,
  );
}

/**
 * Decoded keys by secret text: decoding and checking the base64 of a secret on every request
 * cost as much as the HMAC itself. Few bindings, so a small map that starts over when full; a
 * key is reachable only by its secret's text, which the caller holds from the vault.
 */
const decodedKey = memoByText(256, (secret) => decodeStandardWebhooksKey(secret));

/** `whsec_` + base64 (or the bare base64) is an HMAC key; `whpk_` + base64 of the 32 key bytes an Ed25519 public key. */
function standardWebhooksKey(secret: string | undefined): StandardWebhooksKey | Refusal {
  if (!secret) return refuse("misconfigured", "scheme standard-webhooks needs a secret");
  return decodedKey(secret);
}

function decodeStandardWebhooksKey(secret: string): StandardWebhooksKey | Refusal {
  if (secret.startsWith("whpk_")) {
    const publicKey = ed25519Key(decodeBase64(secret.slice(5)));
    return publicKey
      ? { version: "v1a", publicKey }
      : refuse("misconfigured", "the whpk_ secret is not base64 of a 32-byte Ed25519 public key");
  }
  if (secret.startsWith("whsk_"))
    return refuse(
      "misconfigured",
      "the secret is a whsk_ signing key; a receiver verifies with the sender's whpk_ public key",
    );
  const hmacKey = decodeBase64(secret.startsWith("whsec_") ? secret.slice(6) : secret);
  return hmacKey?.length
    ? { version: "v1", hmacKey }
    : refuse("misconfigured", "the secret is not whsec_ followed by base64 (nor bare base64)");
}

// GitHub (docs.github.com, "Validating webhook deliveries")

const GITHUB_SIGNATURE = /^sha256=([0-9a-f]{64})$/i;

/** X-Hub-Signature-256: `sha256=` and the hex HMAC-SHA256 of the body. The SHA-1 X-Hub-Signature is not enough. */
function verifyGithub(secret: string | undefined, header: HeaderOf, body: Uint8Array): VerifyResult {
  if (!secret) return refuse("misconfigured", "scheme github-hmac-sha256 needs a secret");
  const signature = header("x-hub-signature-256");
  if (!signature) {
    return refuse(
      "missing_signature",
      header("x-hub-signature")
        ? "only the legacy X-Hub-Signature (HMAC-SHA1) is present, which is not accepted: X-Hub-Signature-256 is required"
        : "no X-Hub-Signature-256 header",
    );
  }
  const hex = GITHUB_SIGNATURE.exec(signature)?.[1];
  if (!hex) return refuse("bad_signature", "X-Hub-Signature-256 is not sha256= followed by 64 hex digits");
  if (!sameDigest(Buffer.from(hex, "hex"), hmacOfBody(secret, body)))
    return refuse("bad_signature", "X-Hub-Signature-256 does not verify");
  return accept(header("x-github-delivery") ?? null);
}

// A plain HMAC-SHA256 of the body in a named header

/** `encoding` (hex by default) of the HMAC-SHA256 of the body, in `header`; a `sha256=` prefix is allowed. No timestamp, so no replay protection. */
function verifyBodyHmac(config: VerifyConfig, header: HeaderOf, body: Uint8Array): VerifyResult {
  if (!config.secret || !config.header)
    return refuse("misconfigured", "scheme hmac-sha256 needs a secret and a header");
  const name = config.header.toLowerCase();
  const encoding = config.encoding ?? "hex";
  const sent = header(name);
  if (!sent) return refuse("missing_signature", `no ${name} header`);
  const value = sent.replace(/^sha256=/i, "");
  const signature =
    encoding === "hex" ? (/^[0-9a-f]{64}$/i.test(value) ? Buffer.from(value, "hex") : null) : decodeBase64(value);
  if (signature?.length !== 32) return refuse("bad_signature", `${name} is not a ${encoding} HMAC-SHA256`);
  if (!sameDigest(signature, hmacOfBody(config.secret, body)))
    return refuse("bad_signature", `${name} does not verify`);
  return accept(null);
}

// A bearer token

/** `Authorization: Bearer <token>` (RFC 6750 section 2.1; the scheme name is case-insensitive), or the bare token in a custom header. */
function verifyBearer(config: VerifyConfig, header: HeaderOf): VerifyResult {
  if (!config.secret) return refuse("misconfigured", "scheme bearer needs a secret");
  const name = (config.header ?? "authorization").toLowerCase();
  const value = header(name);
  if (!value) return refuse("missing_signature", `no ${name} header`);
  const token = name === "authorization" ? /^bearer +(.+)$/i.exec(value)?.[1] : value;
  if (!token) return refuse("bad_signature", "authorization is not a Bearer credential");
  // Digests of both: equal lengths for timingSafeEqual, whatever the length of the token sent.
  if (!timingSafeEqual(sha256(token), sha256(config.secret)))
    return refuse("bad_signature", `the token in ${name} does not match`);
  return accept(null);
}

// Telnyx (team-telnyx/telnyx-node src/lib/webhooks.ts)

/** Ed25519 over `${telnyx-timestamp}|${body}`, base64 in telnyx-signature-ed25519. The route takes the event id from the body. */
function verifyTelnyx(
  publicKeyText: string | undefined,
  header: HeaderOf,
  body: Uint8Array,
  now: number,
): VerifyResult {
  if (!publicKeyText) return refuse("misconfigured", "scheme telnyx-ed25519 needs a public key");
  const publicKey = telnyxPublicKey(publicKeyText.trim());
  if (!publicKey)
    return refuse(
      "misconfigured",
      "the public key is not an Ed25519 key (base64 of 32 bytes, or a PEM or base64 DER SubjectPublicKeyInfo)",
    );
  const signature = header("telnyx-signature-ed25519");
  if (!signature) return refuse("missing_signature", "no telnyx-signature-ed25519 header");
  const timestamp = header("telnyx-timestamp");
  if (!timestamp) return refuse("missing_headers", "no telnyx-timestamp header");
  const stale = checkTimestamp("telnyx-timestamp", timestamp, now);
  if (stale) return stale;
  const bytes = decodeBase64(signature);
  if (bytes?.length !== 64) return refuse("bad_signature", "telnyx-signature-ed25519 is not base64 of 64 bytes");
  if (!verifySignature(null, Buffer.concat([Buffer.from(`${timestamp}|`), body]), publicKey, bytes))
    return refuse("bad_signature", "telnyx-signature-ed25519 does not verify");
  return accept(null);
}

// Shared pieces

/** Seconds since the epoch, in digits only, within TOLERANCE_MS of now (null) or the refusal. */
function checkTimestamp(name: string, text: string, now: number): Refusal | null {
  if (!/^\d{1,15}$/.test(text)) return refuse("bad_timestamp", `${name} is not a whole number of seconds`);
  const skewMs = now - Number(text) * 1000;
  if (Math.abs(skewMs) <= TOLERANCE_MS) return null;
  return refuse(
    "stale_timestamp",
    `${name} is ${Math.round(Math.abs(skewMs) / 1000)} s in the ${skewMs > 0 ? "past" : "future"}; ${TOLERANCE_MS / 1000} s are allowed`,
  );
}

/**
 * A signature's bytes only when it is written the one way base64 writes them (padding included,
 * unused bits zero), as the official libraries compare signatures as text: `…=` without its `=`,
 * or with a different last character that decodes the same, is not the signature.
 */
function canonicalBase64(text: string): Buffer | null {
  const bytes = decodeBase64(text);
  return bytes && bytes.toString("base64") === text ? bytes : null;
}

function hmacOfBody(secret: string, body: Uint8Array): Buffer {
  return createHmac("sha256", secret).update(body).digest();
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** A signature as sent (null: it did not decode) against the digest computed here, in constant time. */
function sameDigest(signature: Buffer | null, expected: Buffer): boolean {
  return signature?.length === expected.length && timingSafeEqual(signature, expected);
}
