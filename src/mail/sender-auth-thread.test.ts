/**
 * Sender authentication in its thread (sender-auth-thread.ts): the same results as in-process,
 * its DNS questions answered by the caller's resolver, the event loop free while a large signed
 * message is hashed, and a thread that hangs or crashes costing only the messages it held.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DKIM_KEY_RECORD, signedMessage } from "../../test/helpers/dkim.ts";
import { longestStall } from "../../test/helpers/stall.ts";
import { startDnsServer, type TestDnsServer } from "../../test/helpers/dns-server.ts";
import { ManualClock } from "../core/clock.ts";
import { createDnsResolver } from "./dns.ts";
import { type SenderAuthInput, type SenderAuthResult, verifySender } from "./sender-auth.ts";
import { SenderAuthThread } from "./sender-auth-thread.ts";

const MTA = "mx.agentowl.test";

const input = (raw: Uint8Array, mailFrom = "alice@example.com"): SenderAuthInput => ({
  raw,
  remoteIp: "192.0.2.25",
  helo: "mail.example.com",
  mailFrom,
  mta: MTA,
});

const withoutDuration = ({ duration_ms: _, ...rest }: SenderAuthResult) => rest;

describe("sender authentication in its thread", () => {
  let dns: TestDnsServer;
  let resolver: ReturnType<typeof createDnsResolver>;
  const thread = new SenderAuthThread();
  beforeAll(async () => {
    dns = await startDnsServer({
      "s1._domainkey.example.com": { TXT: [DKIM_KEY_RECORD] },
      "example.com": { TXT: ["v=spf1 ip4:192.0.2.0/24 -all"] },
      "_dmarc.example.com": { TXT: ["v=DMARC1; p=reject"] },
    });
    resolver = createDnsResolver({ servers: dns.servers, timeoutMs: 200 });
  });
  afterAll(async () => {
    thread.close();
    await dns.close();
  });

  test("gives what verifySender gives in-process, its DNS asked through the caller's resolver", async () => {
    const clock = new ManualClock(Date.parse("2026-12-07T12:00:00Z"));
    for (const [raw, from] of [
      [await signedMessage(2000), "alice@example.com"],
      [await signedMessage(2000, []), "alice@example.com"],
      [await signedMessage(2000), "bob@example.org"],
    ] as const) {
      const asked: string[] = [];
      const counted = (name: string, rrtype: string) => (asked.push(`${rrtype} ${name}`), resolver(name, rrtype));
      const there = await thread.verify(input(raw, from), { resolver: counted, clock, totalTimeoutMs: 2000 });
      expect(asked).toContain(`TXT ${from.split("@")[1]}`); // the SPF record of the envelope's domain
      const here = await verifySender(input(raw, from), { resolver, clock, totalTimeoutMs: 2000 });
      expect(withoutDuration(there)).toEqual(withoutDuration(here));
    }
    const signed = await thread.verify(input(await signedMessage(2000)), { resolver, clock });
    expect([signed.spf, signed.dkim, signed.dmarc]).toEqual(["pass", "pass", "pass"]);
  });

  test("a resolver's errors keep their codes: no record is none, a timeout is temperror", async () => {
    const codes: Record<string, string> = { "example.com": "ENOTFOUND", "_dmarc.example.com": "ETIMEOUT" };
    const failing = async (name: string) => {
      throw Object.assign(new Error(`${codes[name] ?? "ENOTFOUND"} ${name}`), { code: codes[name] ?? "ENOTFOUND" });
    };
    const r = await thread.verify(input(await signedMessage(500, [])), { resolver: failing });
    expect([r.spf, r.dkim, r.dmarc]).toEqual(["none", "none", "temperror"]);
  });

  test("the event loop goes on while a large signed message is hashed", async () => {
    // Three signatures over different lengths of 8 MiB: three passes over the body.
    const raw = await signedMessage(8 * 1024 * 1024, [undefined, 6_000_000, 7_000_000]);
    const opts = { resolver, totalTimeoutMs: 30_000 };
    await thread.verify(input(raw), opts); // the thread's start-up and first compile are not the point
    const inProcess = await longestStall(() => verifySender(input(raw), opts));
    const inThread = await longestStall(() => thread.verify(input(raw), opts));
    expect([inProcess.value.dkim, inThread.value.dkim]).toEqual(["pass", "pass"]);
    expect(inProcess.stallMs).toBeGreaterThan(100);
    expect(inThread.stallMs).toBeLessThan(inProcess.stallMs / 4);
  }, 60_000);
});

describe("a thread that hangs or crashes", () => {
  const faulty = join(import.meta.dir, "..", "..", "test", "helpers", "sender-auth-worker-faulty.ts");
  const never = async () => {
    throw Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" });
  };

  test("a hung thread is replaced: its messages are temperror, the next message is verified", async () => {
    const thread = new SenderAuthThread(faulty, 300);
    try {
      const raw = await signedMessage(500, []);
      const hung = thread.verify(input(raw, "hang@faulty.test"), { resolver: never, totalTimeoutMs: 200 });
      const beside = thread.verify(input(raw, "bob@example.net"), { resolver: never, totalTimeoutMs: 200 });
      for (const r of await Promise.all([hung, beside])) {
        expect([r.spf, r.dkim, r.dmarc, r.arc]).toEqual(["temperror", "temperror", "temperror", "temperror"]);
        expect(r.details.spf.comment).toMatch(/^sender authentication did not finish: no result after \d+ ms/);
      }
      expect(thread.load).toBe(0);
      const next = await thread.verify(input(raw, "bob@example.net"), { resolver: never });
      expect([next.spf, next.dkim]).toEqual(["none", "none"]);
    } finally {
      thread.close();
    }
  }, 20_000);

  test("a thread whose module is missing (a binary built without it): the message is temperror, saying so", async () => {
    const thread = new SenderAuthThread("/nonexistent/sender-auth-worker.ts");
    try {
      const r = await thread.verify(input(await signedMessage(500, []), "bob@example.net"), { resolver: never });
      expect([r.spf, r.dkim, r.dmarc, r.arc]).toEqual(["temperror", "temperror", "temperror", "temperror"]);
      expect(r.details.spf.comment).toContain("sender authentication did not finish: its thread crashed");
      expect(r.details.spf.comment).toContain("ModuleNotFound");
      expect(thread.load).toBe(0);
    } finally {
      thread.close();
    }
  });

  test("a crashed thread: its messages are temperror, saying so; the next message gets a fresh thread", async () => {
    const thread = new SenderAuthThread(faulty);
    try {
      const raw = await signedMessage(500, []);
      const crashed = await thread.verify(input(raw, "crash@faulty.test"), { resolver: never });
      expect(crashed.spf).toBe("temperror");
      expect(crashed.details.spf.comment).toContain("sender authentication did not finish: its thread crashed");
      expect(crashed.details.spf.comment).toContain("the faulty worker's crash");
      const next = await thread.verify(input(raw, "bob@example.net"), { resolver: never });
      expect([next.spf, next.dkim]).toEqual(["none", "none"]);
    } finally {
      thread.close();
    }
  }, 20_000);
});

describe("where check() verifies a message", () => {
  const faulty = join(import.meta.dir, "..", "..", "test", "helpers", "sender-auth-worker-faulty.ts");
  const never = async () => {
    throw Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" });
  };
  // The faulty thread hangs on every message from hang@faulty.test: one that reaches it is temperror.
  const reachedTheThread = (r: SenderAuthResult) => r.details.spf.comment?.includes("did not finish") ?? false;

  test("a small unsigned message on the calling thread; a signed one, a large header block or no end to it in the thread", async () => {
    const thread = new SenderAuthThread(faulty, 100);
    const opts = { resolver: never, totalTimeoutMs: 100 };
    const header = "From: Alice <alice@example.com>\r\nSubject: x\r\n";
    try {
      const cases: [string, Buffer, boolean][] = [
        ["unsigned", await signedMessage(100_000, []), false],
        ["signed", await signedMessage(500), true],
        ["an ARC set", Buffer.from(`ARC-Seal: i=1; cv=none\r\n${header}\r\nbody\r\n`), true],
        ["a header block over 64 KiB", Buffer.from(`X-Long: ${"a".repeat(70_000)}\r\n${header}\r\nbody\r\n`), true],
        ["no end to the header block", Buffer.from(`${header}${"X-More: b\r\n".repeat(10)}`), true],
      ];
      for (const [name, raw, inThread] of cases) {
        const r = await thread.check(input(raw, "hang@faulty.test"), opts);
        expect({ name, inThread: reachedTheThread(r) }).toEqual({ name, inThread });
      }
    } finally {
      thread.close();
    }
  }, 20_000);
});
