import { expect, test } from "bun:test";
import { join } from "node:path";
import { tempStorage } from "../../test/helpers/storage.ts";
import { TEST_RECIPIENT } from "../../test/helpers/smtp-ingress.ts";
import { silentLogger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import { MAIL_PROCESS_JOB, type MailProcessLocal, Spool } from "../ingress/smtp/index.ts";
import { DKIM_KEY_RECORD, signedMessage } from "../../test/helpers/dkim.ts";
import { longestStall } from "../../test/helpers/stall.ts";
import { mailIdempotencyKey, mailProcessor, rawDigest } from "./process.ts";
import { verifySender } from "./sender-auth.ts";

/** A temp storage and spool, and the mail.process handler over them with `resolver` for DNS. */
function withProcessor(resolver: (name: string, type: string) => Promise<unknown>) {
  const storage = tempStorage();
  const spool = new Spool(join(storage.dir, "spool"));
  const process = mailProcessor({
    storage,
    spool,
    blobs: storage.blobs,
    resolver,
    metrics: new Metrics(),
    mta: "mx.test",
  });
  return { storage, spool, process };
}

/** What the SMTP accept leaves behind for one message: its bytes in the spool, its row and its job, born leased. */
async function acceptMail(
  storage: ReturnType<typeof tempStorage>,
  spool: Spool,
  id: string,
  mailFrom: string,
  bytes: Buffer,
) {
  const ref = await spool.append(bytes);
  const job = await storage.committer.run((tx) => {
    storage.mail.insertTx(tx, {
      ...{ id, receivedAt: Date.now(), remoteIp: "192.0.2.7", helo: "client.test", mailFrom },
      ...{ recipients: [TEST_RECIPIENT], tls: false, size: bytes.length, spool: ref, trace: [] },
    });
    return storage.queue.enqueueLeasedTx(
      tx,
      { kind: MAIL_PROCESS_JOB, payload: { id } },
      { owner: null, visibilityMs: 60_000 },
    );
  });
  return { id, job: job! };
}

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

test("a job born leased at the accept is processed from the row and bytes handed along, reading neither the row nor the spool; a claimed job reads both", async () => {
  const { storage, spool, process } = withProcessor(async () => {
    throw Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" });
  });
  try {
    const reads = { rows: 0, spool: 0 };
    const getMessage = storage.mail.getMessage.bind(storage.mail);
    storage.mail.getMessage = (id) => (reads.rows++, getMessage(id));
    const read = spool.read.bind(spool);
    spool.read = (ref) => (reads.spool++, read(ref));

    const accept = async (n: number) => {
      const bytes = Buffer.from(`From: a@example.com\r\nSubject: m${n}\r\n\r\nbody ${n}\r\n`);
      return { ...(await acceptMail(storage, spool, `msg_test${n}`, "a@example.com", bytes)), bytes };
    };
    const ctx = { signal: new AbortController().signal, log: silentLogger };

    const born = await accept(1);
    const local: MailProcessLocal = { row: storage.mail.get(born.id)!, raw: born.bytes };
    expect(await process(born.job, { ...ctx, local })).toBe("acked");
    expect(reads).toEqual({ rows: 0, spool: 0 });
    expect(storage.mail.get(born.id)).toMatchObject({ state: "processed", events: [expect.stringMatching(/^evt_/)] });

    // Another message's row and bytes are not taken for this one's.
    const claimed = await accept(2);
    expect(await process(claimed.job, { ...ctx, local })).toBe("acked");
    expect(reads).toEqual({ rows: 1, spool: 1 });
    const event = (await storage.events.get(storage.mail.get(claimed.id)!.events![0]!))!;
    expect(event.envelope.data).toMatchObject({ subject: "m2", text: "body 2\n" });
  } finally {
    await spool.close();
    await storage.dispose();
  }
});

test("a large message with several signatures is processed without holding the event loop: sender authentication runs in its thread", async () => {
  const resolver = async (name: string, type: string) => {
    if (type === "TXT" && name === "s1._domainkey.example.com") return [[DKIM_KEY_RECORD]];
    throw Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" });
  };
  const { storage, spool, process } = withProcessor(resolver);
  try {
    const ctx = { signal: new AbortController().signal, log: silentLogger };
    // Three signatures over different lengths of 8 MiB: three passes over the body.
    const bytes = await signedMessage(8 * 1024 * 1024, [undefined, 6_000_000, 7_000_000]);
    const accept = (n: number) => acceptMail(storage, spool, `msg_large${n}`, "alice@example.com", bytes);
    const first = await accept(1); // the worker threads' start-up is not the point
    expect(await process(first.job, ctx)).toBe("acked");

    // The same verification on this thread, for the measure of what holding the loop looks like here.
    const here = await longestStall(() =>
      verifySender(
        { raw: bytes, remoteIp: "192.0.2.7", helo: "client.test", mailFrom: "alice@example.com", mta: "mx.test" },
        { resolver },
      ),
    );
    expect(here.value.dkim).toBe("pass");
    const second = await accept(2);
    const processed = await longestStall(() => process(second.job, ctx));
    expect(processed.value).toBe("acked");
    const event = (await storage.events.get(storage.mail.get(second.id)!.events![0]!))!;
    expect(event.envelope.data).toMatchObject({ auth: { dkim: "pass" } });
    expect(here.stallMs).toBeGreaterThan(100);
    expect(processed.stallMs).toBeLessThan(here.stallMs / 3);
  } finally {
    await spool.close();
    await storage.dispose();
  }
}, 60_000);
