import { expect, test } from "bun:test";
import { mailIdempotencyKey, rawDigest } from "./process.ts";

const raw = new TextEncoder().encode("Message-ID: <a@example.com>\r\nSubject: x\r\n\r\nbody\r\n");
const rcpt = (...addresses: string[]) => addresses.map((address) => ({ address }));

test("a mail event's key is the same only for the same bytes, envelope sender and recipients (in any order and case)", async () => {
  const key = mailIdempotencyKey(
    await rawDigest(raw),
    "a@example.com",
    rcpt("hello@beta.agentowl.lan", "support@beta.agentowl.lan"),
  );
  expect(key).toMatch(/^mail:[0-9a-f]{64}$/);
  expect(
    mailIdempotencyKey(
      await rawDigest(raw),
      "a@example.com",
      rcpt("SUPPORT@beta.agentowl.lan", "hello@beta.agentowl.lan"),
    ),
  ).toBe(key);
  const other = new TextEncoder().encode("Message-ID: <a@example.com>\r\nSubject: x\r\n\r\nanother body\r\n");
  for (const different of [
    mailIdempotencyKey(
      await rawDigest(other),
      "a@example.com",
      rcpt("hello@beta.agentowl.lan", "support@beta.agentowl.lan"),
    ),
    mailIdempotencyKey(
      await rawDigest(raw),
      "b@example.com",
      rcpt("hello@beta.agentowl.lan", "support@beta.agentowl.lan"),
    ),
    mailIdempotencyKey(await rawDigest(raw), "", rcpt("hello@beta.agentowl.lan", "support@beta.agentowl.lan")),
    mailIdempotencyKey(await rawDigest(raw), "a@example.com", rcpt("hello@beta.agentowl.lan")),
    mailIdempotencyKey(await rawDigest(raw), "a@example.com", rcpt("support@beta.agentowl.lan")),
  ]) {
    expect(different).not.toBe(key);
  }
  // No splicing of the parts: the sender's text cannot stand in for a recipient.
  expect(mailIdempotencyKey("d", "a@x", rcpt("b@y"))).not.toBe(mailIdempotencyKey("d", 'a@x","b@y', rcpt()));
});

test("the raw digest is SHA-256 of the whole message, also past one slice", async () => {
  const big = new Uint8Array(3 * 1024 * 1024 + 17).fill(0x61);
  expect(await rawDigest(big)).toBe(new Bun.CryptoHasher("sha256").update(big).digest("hex"));
});
