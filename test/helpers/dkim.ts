import { generateKeyPairSync } from "node:crypto";

/** One RSA-2048 key for the tests' signatures, and its DKIM key record. */
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
export const DKIM_KEY_RECORD = `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;

/**
 * A message from alice@example.com of about `bodyBytes`, signed by example.com (selector s1)
 * once per entry of `lengths` (a body length, l=, or undefined for the whole body); none:
 * unsigned. Several lengths make several body hashes: the costliest thing a verifier does.
 */
export async function signedMessage(bodyBytes: number, lengths: (number | undefined)[] = [undefined]): Promise<Buffer> {
  const { dkimSign } = await import("mailauth/lib/dkim/sign.js");
  const line = "The quick brown fox jumps over the lazy dog, again and again.  \r\n";
  const text =
    "From: Alice <alice@example.com>\r\nTo: agent@beta.example\r\nSubject: hello\r\n" +
    "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n\r\n" +
    line.repeat(Math.ceil(bodyBytes / line.length));
  if (lengths.length === 0) return Buffer.from(text);
  const signed = await dkimSign(text, {
    canonicalization: "relaxed/relaxed",
    signatureData: lengths.map((maxBodyLength) => ({
      signingDomain: "example.com",
      selector: "s1",
      privateKey: privateKey.export({ type: "pkcs1", format: "pem" }) as string,
      ...(maxBodyLength === undefined ? {} : { maxBodyLength }),
    })),
  } as never);
  if (signed.errors.length) throw new Error(`dkimSign: ${JSON.stringify(signed.errors)}`);
  return Buffer.from(signed.signatures + text);
}
