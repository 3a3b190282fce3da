/**
 * Run by src/mail/sender-auth.test.ts in a process of its own, where nothing has loaded mailauth
 * yet: verifies one unsigned message and prints, as JSON, how long that took and the longest time
 * the event loop was held meanwhile.
 */
import { verifySender } from "../../src/mail/sender-auth.ts";
import { longestStall } from "./stall.ts";

const raw = new TextEncoder().encode("From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n");
const noRecord = async () => {
  throw Object.assign(new Error("no record"), { code: "ENOTFOUND" });
};
const started = performance.now();
const { value, stallMs } = await longestStall(() =>
  verifySender(
    { raw, remoteIp: "192.0.2.1", helo: "mail.example.com", mailFrom: "a@example.com", mta: "mx.test" },
    { resolver: noRecord },
  ),
);
console.log(JSON.stringify({ totalMs: performance.now() - started, stallMs, spf: value.spf, dkim: value.dkim }));
