import { createPublicKey, type KeyObject } from "node:crypto";

/**
 * Ed25519 public keys as operators paste them (a Telnyx binding's key, a Standard Webhooks
 * `whpk_` secret): parsed where they are declared, so that one that does not parse is a
 * validation error, not a refusal of every request (src/control/resources/validate.ts), and where they
 * are used (src/ingress/http/verify.ts).
 */

/** RFC 8410 section 4: the DER SubjectPublicKeyInfo of an Ed25519 key is these 12 bytes and the 32 key bytes. */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** base64 of the 32 key bytes, or of the DER SubjectPublicKeyInfo; null when it is neither. */
export function ed25519Key(bytes: Buffer | null): KeyObject | null {
  const der = bytes?.length === 32 ? Buffer.concat([ED25519_SPKI_PREFIX, bytes]) : bytes;
  if (
    der?.length !== ED25519_SPKI_PREFIX.length + 32 ||
    !der.subarray(0, ED25519_SPKI_PREFIX.length).equals(ED25519_SPKI_PREFIX)
  )
    return null;
  try {
    return createPublicKey({ key: der, format: "der", type: "spki" });
  } catch {
    return null;
  }
}

/** Strict base64 (no whitespace, at most two '='): the bytes, or null. */
export function decodeBase64(text: string): Buffer | null {
  return /^[A-Za-z0-9+/]*={0,2}$/.test(text) ? Buffer.from(text, "base64") : null;
}

/** A Telnyx public key as an operator pastes it: base64 of the 32 key bytes, or a PEM or base64 DER SPKI; null when it is none of these. */
export function telnyxPublicKey(text: string): KeyObject | null {
  if (!text.startsWith("-----BEGIN PUBLIC KEY-----")) return ed25519Key(decodeBase64(text));
  try {
    const key = createPublicKey(text);
    return key.asymmetricKeyType === "ed25519" ? key : null;
  } catch {
    return null;
  }
}
