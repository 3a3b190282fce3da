/**
 * Hostile SMTP dialogues (guarantee 9, docs/guarantees.md) against a real `agentowl serve`: mutated commands,
 * 10 MB lines, NULs, bare CR and LF, pipelining floods, 1,000 recipients, idle floods. Whatever
 * the idle-timeout and command-limit settings are called, these must hold: every reply is a
 * well-formed 2xx-5xx code, the server never dies or stalls its event loop over 250 ms, its RSS
 * stays bounded, a new sender gets its 220 after every flood, and every message answered
 * `250 queued as` becomes a processed message with an event, never a stuck job.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { connect } from "node:net";
import { join } from "node:path";
import { type Family, HostileServer, mailRows, mutate, seeded, suiteTimer } from "../helpers/hostile.ts";
import { waitUntil } from "../helpers/process.ts";
import { type Reply, SmtpDialogue } from "../helpers/smtp.ts";

setDefaultTimeout(90_000);

const rnd = seeded("smtp");
const done = suiteTimer("smtp");
const DOMAIN = "agentowl.lan";
const RCPT = `hello@beta.${DOMAIN}`;
/** Small caps so an idle flood fills them quickly: 5 addresses × 12 = the global cap. */
const MAX_CONNECTIONS = 60;
const PER_IP = 15;
let hs: HostileServer;
/** Every `250 … queued as msg_…` the attacks got: each must become a processed message. */
const queued: string[] = [];

beforeAll(async () => {
  hs = await HostileServer.start("smtp", {
    AGENTOWL_SMTP_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
    AGENTOWL_SMTP_MAX_CONNECTIONS_PER_IP: String(PER_IP),
  });
  expect((await hs.call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
  expect(
    (
      await hs.call("POST", "/v1/tenants/beta/bindings", {
        body: { name: "mail", type: "email", addresses: ["hello", "support"] },
      })
    ).status,
  ).toBe(201);
});

afterAll(async () => {
  await hs?.close();
  done();
});

/** RFC 5321 §4.2: a reply is a three-digit code, 2xx to 5xx, second digit 0-5. */
function expectValid(r: Reply, what: string): void {
  expect(/^[2-5][0-5]\d$/.test(String(r.code)), `${what}: reply ${JSON.stringify(r.raw.slice(0, 200))}`).toBe(true);
}

const queueIdOf = (r: Reply | null | undefined) =>
  r ? (/queued as (msg_[0-9A-Z]{26})/.exec(r.raw)?.[1] ?? null) : null;

async function open(): Promise<{ smtp: SmtpDialogue; greeting: Reply }> {
  const { smtp, greeting } = await SmtpDialogue.open(hs.smtpPort);
  return { smtp, greeting: greeting! };
}

/**
 * Write `bytes` then CRLF and the sentinel `HELP` (214), and read every reply up to the sentinel's:
 * whatever the bytes were split into, each reply is read. Null when the server closed the connection.
 */
async function probe(
  smtp: SmtpDialogue,
  bytes: Uint8Array | string,
  fam: Family,
  what: string,
): Promise<Reply[] | null> {
  smtp.write(bytes);
  smtp.write("\r\nHELP\r\n");
  const out: Reply[] = [];
  for (;;) {
    let r: Reply;
    try {
      r = await smtp.reply(15_000);
    } catch (e) {
      if ((e as Error).message.includes("closed")) return null;
      throw new Error(
        `${what}: no reply within 15 s after ${JSON.stringify(Buffer.from(bytes).toString("latin1").slice(0, 120))}`,
      );
    }
    expectValid(r, what);
    if (r.code === 214) return out;
    fam.saw(r.code);
    out.push(r);
  }
}

/** A new sender, from another address than the attack's, is greeted 220 and can send a mail. */
async function newSenderWorks(fam: Family): Promise<void> {
  const { smtp, greeting } = await SmtpDialogue.open(hs.smtpPort);
  expect(greeting?.code, `${fam.name}: a new sender's greeting ${greeting?.raw}`).toBe(220);
  expect((await smtp.command("EHLO after.example.com")).code).toBe(250);
  const sent = await smtp.sendMail(
    "after@example.com",
    [RCPT],
    `Subject: after ${fam.name}\nMessage-ID: <after-${Date.now()}-${rnd.int(1e9)}@example.com>\n\nstill here\n`,
  );
  expect(sent.end?.code, `${fam.name}: a mail after the attack`).toBe(250);
  queued.push(queueIdOf(sent.end)!);
  smtp.close();
}

const VALID = [
  "EHLO client.example.com",
  "HELO client.example.com",
  "MAIL FROM:<alice@example.com>",
  "MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME SMTPUTF8",
  `RCPT TO:<${RCPT}>`,
  `RCPT TO:<support@beta.${DOMAIN}> NOTIFY=NEVER`,
  "RCPT TO:<nobody@gamma.agentowl.lan>",
  "RSET",
  "NOOP",
  "VRFY hello",
  "EXPN staff",
  "AUTH PLAIN AGZvbwBiYXI=",
  "MAIL FROM:<>",
];

describe("the SMTP dialogue under attack", () => {
  test("mutated commands get well-formed reply codes, the session or a new one goes on", async () => {
    const fam = await hs.family("smtp: mutated commands");
    let { smtp } = await open();
    for (let i = 0; i < 400; i++) {
      const base = rnd.pick(VALID);
      const bytes = mutate(rnd, new TextEncoder().encode(base));
      fam.try(base.split(" ")[0]!);
      const replies = await probe(smtp, bytes, fam, `mutated ${base}`);
      if (replies === null) {
        fam.saw("closed");
        ({ smtp } = await open());
      }
    }
    smtp.close();
    await newSenderWorks(fam);
    await fam.end();
  });

  test("NUL bytes, bare CR and bare LF in commands get well-formed replies", async () => {
    const fam = await hs.family("smtp: NUL, bare CR, bare LF");
    let { smtp } = await open();
    const cases: [string, string][] = [
      ["NUL in EHLO", "EHLO a\0b.example.com"],
      ["NUL in MAIL", "MAIL FROM:<a\0b@example.com>"],
      ["NUL in RCPT", `RCPT TO:<hel\0lo@beta.${DOMAIN}>`],
      ["NUL alone", "\0\0\0\0"],
      ["bare LF", "EHLO x.example.com\nMAIL FROM:<a@example.com>\nRCPT TO:<" + RCPT + ">\nRSET"],
      ["bare CR", "EHLO x.example.com\rMAIL FROM:<a@example.com>\rRSET"],
      ["CR CR LF", "NOOP\r\r\nNOOP"],
      ["LF CR", "NOOP\n\rNOOP"],
      ["high bytes", "EHLO \xff\xfe\x80.example.com"],
    ];
    for (let round = 0; round < 10; round++) {
      for (const [what, line] of cases) {
        fam.try(what);
        if ((await probe(smtp, Buffer.from(line, "latin1"), fam, what)) === null) {
          fam.saw("closed");
          ({ smtp } = await open());
        }
      }
    }
    smtp.close();
    await newSenderWorks(fam);
    await fam.end();
  });

  test("a 10 MB command line and a 10 MB message line are refused or taken, and the server stays up", async () => {
    const fam = await hs.family("smtp: 10 MB lines");
    const huge = "A".repeat(10 * 1024 * 1024);
    for (const cmd of ["EHLO ", "MAIL FROM:<", "", "NOOP "]) {
      fam.try(`10 MB ${cmd.trim() || "bare"} line`);
      const { smtp } = await open();
      const replies = await probe(smtp, cmd + huge, fam, `10 MB ${cmd} line`);
      if (replies === null) fam.saw("closed");
      smtp.close();
    }
    // In DATA: one line of 10 MB, no CRLF in it (RFC 5321 §4.5.3.1.6 allows 998): a 5xx, or kept as it is.
    fam.try("10 MB line in DATA");
    const { smtp } = await open();
    await smtp.command("EHLO big.example.com");
    await smtp.command("MAIL FROM:<big@example.com>");
    await smtp.command(`RCPT TO:<${RCPT}>`);
    expect((await smtp.command("DATA")).code).toBe(354);
    smtp.write(`Subject: one long line\r\nMessage-ID: <long-${rnd.int(1e9)}@example.com>\r\n\r\n${huge}\r\n.\r\n`);
    const end = await smtp.reply(60_000).catch(() => null);
    if (end) {
      expectValid(end, "10 MB line in DATA");
      fam.saw(end.code);
      const id = queueIdOf(end);
      if (id) queued.push(id);
    } else fam.saw("closed");
    smtp.close();
    await newSenderWorks(fam);
    await fam.end();
  });

  test("NULs, bare LFs and a smuggled second message in DATA make at most one message", async () => {
    const fam = await hs.family("smtp: DATA bodies with NUL, bare CR/LF, smuggling");
    const bodies: [string, string][] = [
      ["NUL in body", "Subject: nul\r\n\r\nbefore\0after\r\n"],
      [
        "bare LF dot",
        "Subject: lf\r\n\r\nline\n.\nMAIL FROM:<evil@example.com>\nRCPT TO:<" +
          RCPT +
          ">\nDATA\nSubject: smuggled\n\nx\n",
      ],
      ["bare CR dot", "Subject: cr\r\n\r\nline\r.\rMAIL FROM:<evil@example.com>\r\n"],
      [
        "LF dot CRLF",
        "Subject: mix\r\n\r\nline\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<" + RCPT + ">\r\nDATA\r\n",
      ],
      ["only NULs", "\0".repeat(4096)],
    ];
    for (const [what, body] of bodies) {
      fam.try(what);
      const { smtp } = await open();
      await smtp.command("EHLO data.example.com");
      await smtp.command("MAIL FROM:<data@example.com>");
      await smtp.command(`RCPT TO:<${RCPT}>`);
      expect((await smtp.command("DATA")).code).toBe(354);
      const withId = `Message-ID: <${what.replaceAll(" ", "-")}-${rnd.int(1e9)}@example.com>\r\n${body}`;
      smtp.write(`${withId}\r\n.\r\n`);
      const end = await smtp.reply(15_000);
      expectValid(end, what);
      fam.saw(end.code);
      if (queueIdOf(end)) queued.push(queueIdOf(end)!);
      // Exactly one answer for the DATA: anything after the dot was one message's text, or is
      // now read as commands of this session (each with its own reply), never a second message.
      const next = await probe(smtp, "NOOP", fam, `${what}: after the message`);
      for (const r of next ?? []) expect(r.raw, `${what}: a second message was smuggled`).not.toMatch(/queued as/);
      smtp.close();
    }
    await newSenderWorks(fam);
    await fam.end();
  });

  test("a pipelining flood of 5,000 commands gets a well-formed reply to each command it answers", async () => {
    const fam = await hs.family("smtp: pipelining flood");
    const { smtp } = await open();
    expect((await smtp.command("EHLO flood.example.com")).code).toBe(250);
    const cycle = [
      "MAIL FROM:<f@example.com>",
      `RCPT TO:<${RCPT}>`,
      "RCPT TO:<x@nowhere.example>",
      "RSET",
      "NOOP",
      "VRFY x",
      "HELO again.example.com",
    ];
    const lines: string[] = [];
    for (let i = 0; i < 5000; i++) lines.push(rnd.pick(cycle));
    fam.try("pipelined commands", lines.length);
    smtp.write(`${lines.join("\r\n")}\r\nQUIT\r\n`);
    let answered = 0;
    for (;;) {
      const r = await smtp.reply(20_000).catch((e: Error) => (e.message.includes("closed") ? null : Promise.reject(e)));
      if (!r) break;
      expectValid(r, "pipelined reply");
      fam.saw(r.code);
      answered++;
      if (r.code === 221 || r.code === 421) break;
    }
    expect(answered).toBeLessThanOrEqual(lines.length + 1);
    expect(answered).toBeGreaterThan(0);
    smtp.close();
    await newSenderWorks(fam);
    await fam.end();
  });

  test("1,000 RCPTs in one transaction: the first are taken, the rest get 452 4.5.3, the message is queued once", async () => {
    const fam = await hs.family("smtp: 1,000 RCPTs");
    const { smtp } = await open();
    expect((await smtp.command("EHLO many.example.com")).code).toBe(250);
    const rcpts = Array.from({ length: 1000 }, (_, i) => `RCPT TO:<hello+r${i}@beta.${DOMAIN}>`);
    fam.try("RCPT", rcpts.length);
    smtp.write(`MAIL FROM:<many@example.com>\r\n${rcpts.join("\r\n")}\r\n`);
    const mail = await smtp.reply();
    expect(mail.code).toBe(250);
    const replies: Reply[] = [];
    for (let i = 0; i < rcpts.length; i++) {
      const r = await smtp.reply(20_000).catch(() => null);
      if (!r) break;
      expectValid(r, "RCPT reply");
      fam.saw(r.code);
      replies.push(r);
    }
    expect(replies[0]?.code).toBe(250);
    // A refused recipient past the cap is temporary (RFC 5321 §4.5.3.1.8: 452, the client retries).
    for (const r of replies.filter((r) => r.code !== 250)) expect(r.code, r.raw).toBeGreaterThanOrEqual(400);
    if (!smtp.closed) {
      const data = await smtp.command("DATA");
      expect(data.code).toBe(354);
      smtp.write(`Subject: many\r\nMessage-ID: <many-${rnd.int(1e9)}@example.com>\r\n\r\nto many\r\n.\r\n`);
      const end = await smtp.reply(15_000);
      expect(end.code, end.raw).toBe(250);
      queued.push(queueIdOf(end)!);
    }
    smtp.close();
    await newSenderWorks(fam);
    await fam.end();
  });

  test("an idle flood that fills every connection slot from five addresses does not lock a new sender out", async () => {
    const fam = await hs.family("smtp: idle flood");
    const sockets: ReturnType<typeof connect>[] = [];
    let greeted = 0;
    let refused = 0;
    const per = Math.floor(MAX_CONNECTIONS / 5);
    await Promise.all(
      Array.from({ length: 5 }, (_, a) => a + 2).flatMap((a) =>
        Array.from(
          { length: per },
          () =>
            new Promise<void>((resolve) => {
              const s = connect({ host: "127.0.0.1", port: hs.smtpPort, localAddress: `127.0.0.${a}` });
              sockets.push(s);
              s.setEncoding("utf8");
              s.on("error", () => resolve());
              s.once("data", (d: string) => {
                if (d.startsWith("220")) greeted++;
                else refused++;
                resolve();
              });
              s.on("close", () => resolve());
            }),
        ),
      ),
    );
    fam.try("idle connections", sockets.length);
    fam.saw("220", greeted);
    fam.saw("refused", refused);
    try {
      // Idle connections without a transaction are shed first when the cap is near, so a sender from
      // another address still gets its greeting (docs/architecture.md, "The SMTP pipeline": shedding).
      const { smtp, greeting } = await SmtpDialogue.open(hs.smtpPort);
      fam.try("new sender during the flood");
      fam.saw(`new sender ${greeting?.code}`);
      expect(greeting?.code, `a new sender during an idle flood of ${greeted} connections: ${greeting?.raw}`).toBe(220);
      smtp.close();
    } finally {
      for (const s of sockets) s.destroy();
      await waitUntil(
        "the flood's connections closed",
        async () => /^agentowl_smtp_connections 0$/m.test(await hs.metrics()),
        10_000,
      );
      await newSenderWorks(fam);
      await fam.end();
    }
  });

  test("every message the attacks got queued becomes a processed message with an event; no job stays stuck", async () => {
    const db = mailRows(hs.dataDir);
    try {
      const stateOf = db.row;
      await waitUntil(
        `${queued.length} queued messages processed`,
        () => queued.every((id) => stateOf(id)?.state !== "queued"),
        60_000,
        100,
      );
      for (const id of queued) {
        const row = stateOf(id);
        expect(row?.state, `${id}: ${row?.error}`).toBe("processed");
        expect(JSON.parse(row!.events ?? "[]").length, `${id} has an event`).toBeGreaterThan(0);
      }
      expect(db.unfinishedJobs()).toBe(0);
      console.log(`[hostile] smtp: ${queued.length} queued messages, all processed with an event`);
    } finally {
      db.close();
    }
  });
});
