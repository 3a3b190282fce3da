/**
 * What one SMTP connection may hold (guarantee 9, docs/guarantees.md), over real sockets to the appliance running
 * in this process: idle budgets before the first EHLO, between transaction commands (NOOP and the
 * like do not reset it) and in DATA, the per-connection command limit, and the shedding of
 * connections without a transaction when the listener is nearly full. Clients come from several
 * loopback addresses (127.0.0.2, …) so that the per-address cap is not what stops them.
 */
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App } from "../../src/app/app.ts";
import { apiCaller } from "../helpers/api.ts";
import { waitUntil } from "../helpers/process.ts";
import { type Reply, SmtpDialogue, startSmtpAppliance } from "../helpers/smtp.ts";
import { sqliteOf } from "../helpers/storage.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-smtp-sessions-7e2a9c4b1d3f5a6e";
const root = mkdtempSync(join(tmpdir(), "agentowl-smtp-sessions-"));
const DOMAIN = "agentowl.lan";
const HELLO = `hello@beta.${DOMAIN}`;
afterAll(() => rmSync(root, { recursive: true, force: true }));

let apps = 0;
/** An appliance with these settings and tenant beta's `hello` mailbox; stopped after `body`. */
async function withApp(env: Record<string, string>, body: (app: App) => Promise<void>): Promise<void> {
  const app = await startSmtpAppliance(join(root, `app-${++apps}`), BOOTSTRAP, env, () => {}, "warn");
  try {
    const api = apiCaller(() => app.url, BOOTSTRAP);
    expect((await api("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
    expect(
      (await api("POST", "/v1/tenants/beta/bindings", { body: { name: "mail", type: "email", addresses: ["hello"] } }))
        .status,
    ).toBe(201);
    await body(app);
  } finally {
    await app.stop();
  }
}

const mailCount = (a: App) =>
  (sqliteOf(a).handle.sqlite.query("SELECT count(*) AS n FROM mail_messages").get() as { n: number }).n;
const sessionMetric = async (a: App, outcome: string) =>
  Number(
    new RegExp(`agentowl_smtp_stage_total\\{stage="session",outcome="${outcome}"\\} (\\d+)`).exec(
      await (await fetch(`${a.url}/metrics`)).text(),
    )?.[1] ?? 0,
  );

/** The last reply before the server closed the connection (waits up to `ms` for the close). */
async function lastWords(smtp: SmtpDialogue, ms: number): Promise<Reply | null> {
  expect(await smtp.closedByServer(ms)).toBe(true);
  let last: Reply | null = null;
  for (;;) {
    const r = await smtp.reply(10).catch(() => null);
    if (!r) return last;
    last = r;
  }
}

/** A connection that EHLOs, gives MAIL FROM and one accepted RCPT, then waits. */
async function inTransaction(port: number, from: string): Promise<SmtpDialogue> {
  const { smtp, greeting } = await SmtpDialogue.open(port, { from });
  expect(greeting!.code).toBe(220);
  expect((await smtp.command("EHLO busy.example")).code).toBe(250);
  expect((await smtp.command("MAIL FROM:<a@example.com>")).code).toBe(250);
  expect((await smtp.command(`RCPT TO:<${HELLO}>`)).code).toBe(250);
  return smtp;
}

test(`an idle flood at the connection cap does not keep a new sender out: idle connections are shed for it, \
and the flood is closed after smtp_greeting_timeout and smtp_idle_timeout`, async () => {
  await withApp(
    {
      AGENTOWL_SMTP_MAX_CONNECTIONS: "20",
      AGENTOWL_SMTP_MAX_CONNECTIONS_PER_IP: "5",
      AGENTOWL_SMTP_GREETING_TIMEOUT: "2s",
      AGENTOWL_SMTP_IDLE_TIMEOUT: "3s",
    },
    async (app) => {
      // Four addresses, five connections each (each under its per-address cap): 20, the cap.
      // Half greet and go quiet, half never say a word.
      const flood: SmtpDialogue[] = [];
      for (let i = 0; i < 20; i++) {
        const { smtp } = await SmtpDialogue.open(app.smtp.port, { from: `127.0.0.${2 + (i % 4)}` });
        if (i % 2 === 0) smtp.write("EHLO idle.example\r\n");
        flood.push(smtp);
      }
      const floodedAt = performance.now();
      // A new sender gets its greeting at once and its message through.
      const t0 = performance.now();
      const { smtp, greeting } = await SmtpDialogue.open(app.smtp.port, { from: "127.0.0.10" });
      expect(greeting!.code).toBe(220);
      expect(performance.now() - t0).toBeLessThan(1000);
      await smtp.command("EHLO sender.example");
      expect((await smtp.sendMail("a@example.com", [HELLO], "Subject: through\r\n\r\nok\r\n")).end!.raw).toMatch(
        /^250 2\.0\.0 queued as /,
      );
      smtp.close();
      expect(await sessionMetric(app, "shed")).toBeGreaterThanOrEqual(1);
      // Every flood connection is gone within its budget: shed (421 4.7.0) or timed out (421 4.4.2).
      const words = await Promise.all(flood.map((f) => lastWords(f, 3000 + 2000 + 2000)));
      expect(performance.now() - floodedAt).toBeLessThan(3000 + 2000 + 2000);
      for (const w of words)
        expect(w?.raw ?? "").toMatch(
          /^421 4\.(7\.0 .*too many connections|4\.2 .*(no EHLO or HELO in time|idle too long))/,
        );
      expect(words.filter((w) => w!.raw.includes("no EHLO or HELO in time")).length).toBeGreaterThan(0);
      expect(await sessionMetric(app, "timeout_greeting")).toBeGreaterThan(0);
      expect(await sessionMetric(app, "timeout_idle")).toBeGreaterThan(0);
    },
  );
});

test("connections that hold a transaction at the cap (and send NOOPs) keep a new sender out no longer than smtp_idle_timeout", async () => {
  await withApp(
    { AGENTOWL_SMTP_MAX_CONNECTIONS: "6", AGENTOWL_SMTP_MAX_CONNECTIONS_PER_IP: "3", AGENTOWL_SMTP_IDLE_TIMEOUT: "2s" },
    async (app) => {
      const held: SmtpDialogue[] = [];
      for (let i = 0; i < 6; i++) held.push(await inTransaction(app.smtp.port, `127.0.0.${2 + (i % 2)}`));
      const heldAt = performance.now();
      let stop = false;
      const noops = (async () => {
        while (!stop) {
          for (const h of held) if (!h.closed) h.write("NOOP\r\n");
          // The subject: clients that keep talking (a NOOP every 200 ms) without doing anything.
          await Bun.sleep(200);
        }
      })();
      // Nothing to shed: the newcomer is refused until the held connections' budget runs out.
      const refused = await SmtpDialogue.open(app.smtp.port, { from: "127.0.0.10" });
      expect(refused.greeting!.raw).toMatch(/^421 4\.7\.0 .*too many connections/);
      let served: SmtpDialogue | null = null;
      await waitUntil(
        "a new sender is served",
        async () => {
          const attempt = await SmtpDialogue.open(app.smtp.port, { from: "127.0.0.10" });
          if (attempt.greeting!.code === 220) served = attempt.smtp;
          else attempt.smtp.close();
          return served !== null;
        },
        10_000,
        100,
      );
      const waited = performance.now() - heldAt;
      stop = true;
      await noops;
      expect(waited).toBeGreaterThanOrEqual(1500);
      expect(waited).toBeLessThan(2000 + 1500);
      for (const h of held) expect((await lastWords(h, 1000))!.raw).toMatch(/^421 4\.4\.2 .*idle too long/);
      await served!.command("EHLO sender.example");
      expect((await served!.sendMail("a@example.com", [HELLO], "Subject: in\r\n\r\nok\r\n")).end!.code).toBe(250);
      served!.close();
    },
  );
});

test(`NOOP, RSET, HELP and VRFY do not keep a session alive: closed smtp_idle_timeout after its last \
transaction command, and smtp_greeting_timeout after connecting without EHLO`, async () => {
  await withApp({ AGENTOWL_SMTP_GREETING_TIMEOUT: "1s", AGENTOWL_SMTP_IDLE_TIMEOUT: "1500ms" }, async (app) => {
    const loop = async (smtp: SmtpDialogue, since: number) => {
      const commands = ["NOOP", "RSET", "HELP", "VRFY hello", "NOOP"];
      for (let i = 0; ; i++) {
        const r = await smtp.command(commands[i % commands.length]!).catch(() => null);
        if (!r || r.code === 421 || performance.now() - since > 8000)
          return { reply: r, after: performance.now() - since };
        expect(r.code).toBeLessThan(300);
        // The subject: a client that sends a harmless command every 100 ms.
        await Bun.sleep(100);
      }
    };
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO noop.example");
    expect((await smtp.command("MAIL FROM:<a@example.com>")).code).toBe(250);
    const ended = await loop(smtp, performance.now());
    expect(ended.reply?.raw ?? (await lastWords(smtp, 1000))?.raw).toMatch(/^421 4\.4\.2 .*idle too long/);
    expect(ended.after).toBeGreaterThanOrEqual(1400);
    expect(ended.after).toBeLessThan(1500 + 1000);
    expect(await smtp.closedByServer(1000)).toBe(true);

    const quiet = await SmtpDialogue.open(app.smtp.port);
    const mute = await loop(quiet.smtp, performance.now());
    expect(mute.reply?.raw ?? (await lastWords(quiet.smtp, 1000))?.raw).toMatch(
      /^421 4\.4\.2 .*no EHLO or HELO in time/,
    );
    expect(mute.after).toBeGreaterThanOrEqual(900);
    expect(mute.after).toBeLessThan(1000 + 1000);
  });
});

test("past smtp_max_commands without a message accepted, a connection is answered 421 4.7.0 and closed", async () => {
  await withApp({ AGENTOWL_SMTP_MAX_COMMANDS: "10" }, async (app) => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    expect((await smtp.command("EHLO many.example")).code).toBe(250);
    for (let i = 2; i <= 10; i++) expect((await smtp.command("NOOP")).code).toBe(250);
    expect((await smtp.command("NOOP")).raw).toMatch(/^421 4\.7\.0 .*too many commands/);
    expect(await smtp.closedByServer(2000)).toBe(true);
    expect(await sessionMetric(app, "too_many_commands")).toBe(1);
    // A pipelined flood is cut at the same count.
    const flood = await SmtpDialogue.open(app.smtp.port);
    flood.smtp.write("NOOP\r\n".repeat(50));
    const codes: number[] = [];
    for (;;) {
      const r = await flood.smtp.reply(2000).catch(() => null);
      if (!r) break;
      codes.push(r.code);
    }
    expect(codes).toEqual([...Array(10).fill(250), 421]);
    // An accepted message starts the count again: a relay sends many messages on one connection
    // (MAIL, RCPT, DATA: three commands each, 30 here against a limit of 10).
    const relay = await SmtpDialogue.open(app.smtp.port);
    expect((await relay.smtp.command("EHLO relay.example")).code).toBe(250);
    for (let i = 0; i < 10; i++)
      expect((await relay.smtp.sendMail("a@example.com", [HELLO], `Subject: ${i}\r\n\r\nok\r\n`)).end!.code).toBe(250);
    relay.smtp.close();
  });
});

test("the shed closes connections without a transaction, never one with an accepted RCPT or in DATA", async () => {
  // Cap 10, shed above 8 (80 %).
  await withApp({ AGENTOWL_SMTP_MAX_CONNECTIONS: "10", AGENTOWL_SMTP_MAX_CONNECTIONS_PER_IP: "10" }, async (app) => {
    const port = app.smtp.port;
    const transaction = await inTransaction(port, "127.0.0.2");
    const data = await inTransaction(port, "127.0.0.3");
    expect((await data.command("DATA")).code).toBe(354);
    data.write("Subject: slow\r\n\r\nfirst half ");
    const mailOnly = (await SmtpDialogue.open(port, { from: "127.0.0.4" })).smtp;
    await mailOnly.command("EHLO m.example");
    expect((await mailOnly.command("MAIL FROM:<m@example.com>")).code).toBe(250);
    const idle: SmtpDialogue[] = [];
    for (let i = 0; i < 5; i++) {
      const { smtp } = await SmtpDialogue.open(port, { from: "127.0.0.5" });
      await smtp.command("EHLO idle.example");
      idle.push(smtp);
    }
    // 8 open; each newcomer pushes the count over 8 and sheds one idle connection.
    const newcomers = [];
    for (let i = 0; i < 2; i++) {
      const { smtp, greeting } = await SmtpDialogue.open(port, { from: "127.0.0.6" });
      expect(greeting!.code).toBe(220);
      newcomers.push(smtp);
    }
    await waitUntil("two idle connections shed", () => idle.filter((c) => c.closed).length === 2, 5000);
    for (const c of idle.filter((x) => x.closed))
      expect((await c.reply(100)).raw).toMatch(/^421 4\.7\.0 .*too many connections; closing idle ones/);
    expect(await sessionMetric(app, "shed")).toBe(2);
    // The transactions go on.
    expect(transaction.closed || data.closed || mailOnly.closed).toBe(false);
    expect((await transaction.command("DATA")).code).toBe(354);
    transaction.write("Subject: kept\r\n\r\nok\r\n.\r\n");
    expect((await transaction.reply()).code).toBe(250);
    data.write("second half\r\n.\r\n");
    expect((await data.reply()).code).toBe(250);
    expect((await mailOnly.command(`RCPT TO:<${HELLO}>`)).code).toBe(250);
    for (const c of [transaction, data, mailOnly, ...newcomers, ...idle]) c.close();
  });
});

test("a DATA is bounded in all by smtp_data_timeout and between chunks by smtp_idle_timeout; nothing is stored", async () => {
  await withApp({ AGENTOWL_SMTP_DATA_TIMEOUT: "2s", AGENTOWL_SMTP_IDLE_TIMEOUT: "1s" }, async (app) => {
    const before = mailCount(app);
    // A trickle: a line every 200 ms never leaves the socket idle, but the whole takes too long.
    const trickle = await inTransaction(app.smtp.port, "127.0.0.2");
    expect((await trickle.command("DATA")).code).toBe(354);
    const t0 = performance.now();
    let writing = true;
    const writer = (async () => {
      while (writing && !trickle.closed) {
        trickle.write("a slow line\r\n");
        await Bun.sleep(200);
      }
    })();
    const words = await lastWords(trickle, 5000);
    writing = false;
    await writer;
    expect(words!.raw).toMatch(/^421 4\.4\.2 .*the message is taking too long/);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1900);
    expect(performance.now() - t0).toBeLessThan(2000 + 1500);

    // A pause in the middle of the message longer than smtp_idle_timeout.
    const stalled = await inTransaction(app.smtp.port, "127.0.0.3");
    expect((await stalled.command("DATA")).code).toBe(354);
    stalled.write("Subject: stalled\r\n\r\nhalf");
    const t1 = performance.now();
    expect((await lastWords(stalled, 4000))!.raw).toMatch(/^421 4\.4\.2 .*no data for too long/);
    expect(performance.now() - t1).toBeGreaterThanOrEqual(900);
    expect(performance.now() - t1).toBeLessThan(1000 + 1500);
    expect(mailCount(app)).toBe(before);
    expect(await sessionMetric(app, "timeout_data")).toBe(2);
  });
});
