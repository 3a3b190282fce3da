import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import type { SMTPServerDataStream } from "smtp-server";
import { bindEmail, startSmtpIngress, TEST_RECIPIENT } from "../../../test/helpers/smtp-ingress.ts";
import { SmtpDialogue } from "../../../test/helpers/smtp.ts";
import { ManualClock } from "../../core/clock.ts";
import { DataStage } from "./data.ts";
import { SmtpReply } from "./guard.ts";
import { Spool } from "./spool.ts";

const root = mkdtempSync(join(tmpdir(), "agentowl-data-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A DATA stream as smtp-server hands it over: the message's bytes, then its end. */
function dataStream(bytes: Buffer, chunk = 4096): SMTPServerDataStream {
  const stream = new PassThrough() as unknown as SMTPServerDataStream;
  queueMicrotask(() => {
    for (let at = 0; at < bytes.length; at += chunk)
      (stream as unknown as PassThrough).write(bytes.subarray(at, at + chunk));
    (stream as unknown as PassThrough).end();
  });
  return stream;
}

function stageIn(name: string, maxMessageBytes = 1024) {
  const spool = new Spool(join(root, name));
  const counted: [string, string][] = [];
  const clock = new ManualClock();
  const stage = new DataStage({ spool, maxMessageBytes, clock, count: (s, o) => counted.push([s, o]) });
  return { spool, stage, counted, clock };
}

describe("the DATA stage", () => {
  test("a message within the limit is spooled byte for byte, its DATA and spool spans in its trace", async () => {
    const { spool, stage, counted, clock } = stageIn("fits");
    const raw = Buffer.from(`Subject: hi\r\n\r\n${"x".repeat(900)}\r\n`);
    const txn = { recipients: [TEST_RECIPIENT], mailAt: clock.now() };
    const message = await stage.receive(dataStream(raw, 100), txn, new AbortController().signal);
    expect(message.raw).toEqual(raw);
    expect(spool.read(message.spooled)).toEqual(new Uint8Array(raw));
    expect(message.receivedAt).toBe(clock.now());
    expect(message.recipients).toEqual([TEST_RECIPIENT]);
    expect(message.trace.map((s) => s.name)).toEqual(["smtp.data", "spool.write"]);
    expect(counted).toEqual([["spool", "ok"]]);
    await spool.close();
  });

  test("a message over the size limit is refused 552 5.3.4 and nothing is spooled", async () => {
    const { spool, stage, counted } = stageIn("too-big", 1024);
    const txn = { recipients: [TEST_RECIPIENT], mailAt: 0 };
    const e = await stage
      .receive(dataStream(Buffer.alloc(1025, 120)), txn, new AbortController().signal)
      .catch((e) => e);
    expect(e).toBeInstanceOf(SmtpReply);
    expect([e.responseCode, e.message, e.outcome]).toEqual([
      552,
      "5.3.4 message exceeds the maximum size of 1024 bytes",
      "too_big",
    ]);
    expect(spool.stats.appended).toBe(0);
    expect(spool.size()).toBe(0);
    expect(counted).toEqual([]);
    await spool.close();
  });

  test("a client that goes away during DATA ends the read with 421 4.4.2; nothing is spooled", async () => {
    const { spool, stage } = stageIn("gone");
    const stream = new PassThrough();
    stream.write("Subject: cut off\r\n");
    const closed = new AbortController();
    const reading = stage.receive(
      stream as unknown as SMTPServerDataStream,
      { recipients: [TEST_RECIPIENT], mailAt: 0 },
      closed.signal,
    );
    closed.abort();
    const e = await reading.catch((e) => e);
    expect([e.responseCode, e.message]).toEqual([421, "4.4.2 connection closed during DATA"]);
    expect(spool.stats.appended).toBe(0);
    await spool.close();
  });
});

describe("DATA through the listener", () => {
  test("over smtp_max_message_size: 552 5.3.4 at the end of DATA, and no row, no job, no spooled bytes", async () => {
    const smtp = await startSmtpIngress({ env: { AGENTOWL_SMTP_MAX_MESSAGE_SIZE: "1024" } });
    try {
      await bindEmail(smtp.storage, "beta", "mail", ["hello"]);
      const { smtp: client } = await SmtpDialogue.open(smtp.port);
      await client.command("EHLO client.test");
      const sent = await client.sendMail("sender@example.com", ["hello@beta.agentowl.lan"], "x".repeat(4000));
      expect(sent.end!.raw).toStartWith("552 5.3.4 ");
      expect(smtp.storage.mail.spoolSegments().size).toBe(0);
      expect(await smtp.storage.queue.backlog()).toBe(0);
      expect(smtp.spool.stats.appended).toBe(0);
      // The session goes on: the next message within the limit is taken.
      const next = await client.sendMail("sender@example.com", ["hello@beta.agentowl.lan"], "Subject: small\r\n\r\nok");
      expect(next.end!.raw).toMatch(/^250 2\.0\.0 queued as msg_\S+$/);
      client.close();
    } finally {
      await smtp.stop();
    }
  });
});
