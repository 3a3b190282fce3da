/**
 * The SMTP listener end to end (docs/architecture.md#the-smtp-pipeline): real SMTP over sockets to the appliance
 * running in this process — raw dialogues, nodemailer, swaks for STARTTLS — and what comes out
 * at the other end: mail rows, spool bytes, events on /v1/events, metrics.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { connect as tlsConnect } from "node:tls";
import nodemailer from "nodemailer";
import type { App } from "../../src/app/app.ts";
import { apiCaller } from "../helpers/api.ts";
import { metric } from "../helpers/metrics.ts";
import { type DnsZone, startDnsServer } from "../helpers/dns-server.ts";
import { mountTmpfs } from "../helpers/mount.ts";
import { runAgentowl } from "../helpers/process.ts";
import { SmtpDialogue, startSmtpAppliance } from "../helpers/smtp.ts";
import { sqliteOf, until } from "../helpers/storage.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-smtp-3c9e1f7a5b2d4e6f8a0c";
const CORPUS = join(import.meta.dir, "..", "..", "..", "shared", "corpus");
const root = mkdtempSync(join(tmpdir(), "agentowl-smtp-"));
const logLines: string[] = [];
const stderrLines: string[] = [];
let app: App;
const call = apiCaller(() => app.url, BOOTSTRAP);
const DOMAIN = "agentowl.lan";
/** Above the corpus's largest message (1.1 MB). */
const MAX_SIZE = 2 * 1024 * 1024;
const at = (agent: string, tenant: string) => `${agent}@${tenant}.${DOMAIN}`;

function start(name: string, env: Record<string, string> = {}, sink?: (line: string) => void): Promise<App> {
  return startSmtpAppliance(join(root, name), BOOTSTRAP, env, sink);
}

async function seed(target: App): Promise<void> {
  const api = apiCaller(() => target.url, BOOTSTRAP);
  for (const [tenant, addresses] of [
    ["beta", ["hello", "support"]],
    ["gamma", ["hello"]],
  ] as const) {
    expect((await api("POST", "/v1/tenants", { body: { name: tenant } })).status).toBe(201);
    expect(
      (await api("POST", `/v1/tenants/${tenant}/bindings`, { body: { name: "mail", type: "email", addresses } }))
        .status,
    ).toBe(201);
  }
}

const mailCount = (a: App) =>
  (sqliteOf(a).handle.sqlite.query("SELECT count(*) AS n FROM mail_messages").get() as { n: number }).n;

/** The events made from one queued message, once processing has finished. */
async function eventsOf(queueId: string, a: App = app): Promise<Record<string, any>[]> {
  await until(`message ${queueId} processed`, () => sqliteOf(a).mail.get(queueId)?.state !== "queued", 20_000);
  const row = sqliteOf(a).mail.get(queueId)!;
  expect(row.state, row.error ?? "").toBe("processed");
  const out = [];
  for (const id of row.events ?? []) {
    const r = await apiCaller(() => a.url, BOOTSTRAP)("GET", `/v1/events/${id}`);
    expect(r.status).toBe(200);
    out.push(r.body);
  }
  return out;
}

const queueIdOf = (text: string) => /queued as (msg_[0-9A-Z]{26})/.exec(text)?.[1] ?? null;

beforeAll(async () => {
  const origError = console.error;
  console.error = (...args: unknown[]) => {
    stderrLines.push(args.map(String).join(" "));
    origError(...args);
  };
  app = await start(
    "main",
    { AGENTOWL_SMTP_MAX_RECIPIENTS: "5", AGENTOWL_SMTP_MAX_MESSAGE_SIZE: String(MAX_SIZE) },
    (l) => logLines.push(l),
  );
  await seed(app);
});

afterAll(async () => {
  await app?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("session", () => {
  test("EHLO announces SIZE, 8BITMIME, SMTPUTF8, PIPELINING, STARTTLS, and no AUTH", async () => {
    const { smtp, greeting } = await SmtpDialogue.open(app.smtp.port);
    expect(greeting!.code).toBe(220);
    expect(greeting!.lines[0]).toContain("ESMTP AgentOwl");
    const ehlo = await smtp.command("EHLO client.example.com");
    expect(ehlo.code).toBe(250);
    const words = ehlo.lines.map((l) => l.split(" ")[0]);
    expect(words).toEqual(
      expect.arrayContaining(["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "STARTTLS", "ENHANCEDSTATUSCODES"]),
    );
    expect(ehlo.lines).toContain(`SIZE ${MAX_SIZE}`);
    expect(words).not.toContain("AUTH");
    expect((await smtp.command("AUTH PLAIN AGZvbwBiYXI=")).raw).toMatch(/^500 5\.5\.2 /);
    expect((await smtp.command("QUIT")).code).toBe(221);
    smtp.close();
  });

  test("HELO works too; RSET ends the transaction", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    expect((await smtp.command("HELO old.example.com")).code).toBe(250);
    expect((await smtp.command("MAIL FROM:<a@example.com>")).code).toBe(250);
    expect((await smtp.command(`RCPT TO:<${at("hello", "beta")}>`)).code).toBe(250);
    expect((await smtp.command("RSET")).code).toBe(250);
    expect((await smtp.command("DATA")).code).toBe(503);
    expect((await smtp.command(`RCPT TO:<${at("hello", "beta")}>`)).code).toBe(503);
    smtp.close();
  });

  test("a message to a known agent is spooled and committed before 250 2.0.0 queued as <id>, then becomes an event", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO client.example.com");
    const message =
      "From: Alice <alice@example.com>\nTo: hello@beta.agentowl.lan\nSubject: Invoice 42\nMessage-ID: <inv-42@example.com>\n\nPlease pay.\n";
    const r = await smtp.sendMail("alice@example.com", [at("Hello+Invoices", "BETA")], message);
    expect(r.rcpts[0]!.raw).toBe("250 2.1.5 Accepted");
    expect(r.end!.raw).toMatch(/^250 2\.0\.0 queued as msg_[0-9A-Z]{26}$/);
    const id = queueIdOf(r.end!.raw)!;
    // Committed before the reply: the row is there now, and its bytes are in the spool.
    const row = sqliteOf(app).mail.get(id)!;
    expect(row).toMatchObject({
      remoteIp: "127.0.0.1",
      helo: "client.example.com",
      mailFrom: "alice@example.com",
      tls: false,
    });
    expect(row.recipients).toEqual([
      { address: at("Hello+Invoices", "BETA"), tenant: "beta", agent: "hello", tag: "invoices", binding: "mail" },
    ]);
    const [event] = await eventsOf(id);
    expect(event).toMatchObject({
      type: "email.received",
      tenant: "beta",
      agent: "hello",
      channel: "email",
      source: {
        binding: "mail",
        remote_ip: "127.0.0.1",
        helo: "client.example.com",
        queue_id: id,
        mail_from: "alice@example.com",
      },
      data: {
        message_id: "<inv-42@example.com>",
        subject: "Invoice 42",
        from: { name: "Alice", address: "alice@example.com" },
        agents: ["hello"],
        tags: ["invoices"],
      },
    });
    expect(event!.idempotency_key).toMatch(/^mail:[0-9a-f]{64}$/);
    expect(event!.data.text.trim()).toBe("Please pay.");
    // No DNS reachable: the verdicts that need it are temperror, and the pipeline carried on.
    expect(event!.data.auth.spf).toBe("temperror");
    // The ingress's spans, then (once routed, which may already have happened) routing's.
    expect(event!.trace.map((s: { name: string }) => s.name).slice(0, 6)).toEqual([
      "smtp.data",
      "spool.write",
      "ingress.commit",
      "mime.parse",
      "sender.auth",
      "normalize",
    ]);
    const listed = await call("GET", "/v1/events?tenant=beta&type=email.received");
    expect(listed.body.items.map((e: { id: string }) => e.id)).toContain(event!.id);
    const shown = await runAgentowl(["events", "show", event!.id, "--json"], {
      cwd: root,
      env: { AGENTOWL_URL: app.url, AGENTOWL_TOKEN: BOOTSTRAP, HOME: root },
    });
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: event!.id, data: { subject: "Invoice 42" } });
    await smtp.command("QUIT");
    smtp.close();
  });

  test("unknown tenant and unknown agent are the same 550 5.1.1; the transaction goes on with the known ones", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    expect((await smtp.command("MAIL FROM:<a@example.com>")).raw).toBe("250 2.1.0 Accepted");
    const unknownTenant = await smtp.command(`RCPT TO:<${at("hello", "nosuch")}>`);
    const unknownAgent = await smtp.command(`RCPT TO:<${at("nobody", "beta")}>`);
    const otherDomain = await smtp.command("RCPT TO:<hello@beta.example.com>");
    for (const r of [unknownTenant, unknownAgent, otherDomain])
      expect(r.raw).toMatch(/^550 5\.1\.1 <[^>]+>: no such recipient here$/);
    expect((await smtp.command(`RCPT TO:<${at("support", "beta")}>`)).code).toBe(250);
    expect((await smtp.command("DATA")).code).toBe(354);
    smtp.write("Subject: x\r\n\r\nbody\r\n.\r\n");
    expect((await smtp.reply()).code).toBe(250);
    smtp.close();
  });

  test("too many recipients: 452 4.5.3 for the one past the limit", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    await smtp.command("MAIL FROM:<a@example.com>");
    const replies = [];
    for (const agent of ["hello", "support", "hello+1", "hello+2", "hello+3", "hello+4"])
      replies.push(await smtp.command(`RCPT TO:<${at(agent, "beta")}>`));
    expect(replies.slice(0, 5).every((r) => r.code === 250)).toBe(true);
    expect(replies[5]!.raw).toBe("452 4.5.3 Error: too many recipients");
    smtp.close();
  });

  test("one message to two tenants: one event each, and each sees only its own recipients", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    const r = await smtp.sendMail(
      "a@example.com",
      [at("hello", "beta"), at("hello", "gamma"), at("support", "beta")],
      "Subject: both\r\nMessage-ID: <both@example.com>\r\n\r\nhi\r\n",
    );
    const events = await eventsOf(queueIdOf(r.end!.raw)!);
    expect(events.map((e) => [e.tenant, e.agent, e.data.agents, e.source.rcpt_to])).toEqual([
      ["beta", "hello", ["hello", "support"], [at("hello", "beta"), at("support", "beta")]],
      ["gamma", "hello", ["hello"], [at("hello", "gamma")]],
    ]);
    // A gamma token cannot see beta's event.
    const gammaToken = (await call("POST", "/v1/tokens", { body: { name: "g", scopes: ["tenant:gamma:read"] } })).body
      .token;
    expect((await call("GET", `/v1/events/${events[0]!.id}`, { token: gammaToken })).status).toBe(404);
    smtp.close();
  });

  test(`the same Message-ID to two agents in two messages: each message yields its own event (the key is the \
bytes and the envelope, not the Message-ID)`, async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    const message = "From: a@example.com\r\nSubject: same id\r\nMessage-ID: <same-id@example.com>\r\n\r\nhi\r\n";
    const first = await smtp.sendMail("a@example.com", [at("hello", "beta")], message);
    const second = await smtp.sendMail("a@example.com", [at("support", "beta")], message);
    const other = await smtp.sendMail("a@example.com", [at("support", "beta")], message.replace("hi", "another text"));
    smtp.close();
    const events = [
      ...(await eventsOf(queueIdOf(first.end!.raw)!)),
      ...(await eventsOf(queueIdOf(second.end!.raw)!)),
      ...(await eventsOf(queueIdOf(other.end!.raw)!)),
    ];
    expect(events.map((e) => [e.agent, e.source.rcpt_to, e.data.message_id])).toEqual([
      ["hello", [at("hello", "beta")], "<same-id@example.com>"],
      ["support", [at("support", "beta")], "<same-id@example.com>"],
      ["support", [at("support", "beta")], "<same-id@example.com>"],
    ]);
    expect(new Set(events.map((e) => e.id)).size).toBe(3);
  });

  test(`the recipients a client resends after 452 4.5.3, in a new transaction with the same message, get \
their own event: one event per recipient`, async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    const message =
      "From: a@example.com\r\nSubject: many recipients\r\nMessage-ID: <many-rcpts@example.com>\r\n\r\nto all\r\n";
    const all = ["hello+r1", "hello+r2", "hello+r3", "hello+r4", "hello+r5", "support+r6", "hello+r7"].map((a) =>
      at(a, "beta"),
    );
    const first = await smtp.sendMail("a@example.com", all, message);
    expect(first.rcpts.map((r) => r.code)).toEqual([250, 250, 250, 250, 250, 452, 452]);
    expect(first.end!.code).toBe(250);
    // The client sends the rest as RFC 5321 §4.5.3.1.10 says: a new transaction, the same message.
    const rest = await smtp.sendMail("a@example.com", all.slice(5), message);
    expect(rest.end!.code).toBe(250);
    smtp.close();
    const events = [...(await eventsOf(queueIdOf(first.end!.raw)!)), ...(await eventsOf(queueIdOf(rest.end!.raw)!))];
    expect(events.map((e) => [e.data.agents, e.source.rcpt_to])).toEqual([
      [["hello"], all.slice(0, 5)],
      [["support", "hello"], all.slice(5)],
    ]);
    expect(events[0]!.id).not.toBe(events[1]!.id);
    // Every recipient is in exactly one event.
    expect(events.flatMap((e) => e.source.rcpt_to).sort()).toEqual([...all].sort());
  });

  test("a byte-identical retransmission with the same envelope yields no second event; the same bytes from another sender do", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    const message = "From: a@example.com\r\nSubject: retransmitted\r\nMessage-ID: <again@example.com>\r\n\r\nonce\r\n";
    const first = await smtp.sendMail("a@example.com", [at("hello", "beta"), at("support", "beta")], message);
    // A client that lost our 250 sends it all again (recipients in another order and case: the same mailboxes).
    const again = await smtp.sendMail("a@example.com", [at("SUPPORT", "beta"), at("hello", "beta")], message);
    const otherSender = await smtp.sendMail("b@example.com", [at("hello", "beta"), at("support", "beta")], message);
    smtp.close();
    const [original] = await eventsOf(queueIdOf(first.end!.raw)!);
    const [repeat] = await eventsOf(queueIdOf(again.end!.raw)!);
    const [fromB] = await eventsOf(queueIdOf(otherSender.end!.raw)!);
    expect(repeat!.id).toBe(original!.id);
    expect(fromB!.id).not.toBe(original!.id);
    const stored = sqliteOf(app)
      .handle.sqlite.query(
        "SELECT count(*) AS n FROM events WHERE tenant = 'beta' AND envelope LIKE '%<again@example.com>%'",
      )
      .get() as { n: number };
    expect(stored.n).toBe(2);
  });

  test("pipelined commands are answered in order", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    smtp.write(
      `MAIL FROM:<a@example.com>\r\nRCPT TO:<${at("nobody", "beta")}>\r\nRCPT TO:<${at("hello", "beta")}>\r\nDATA\r\n`,
    );
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await smtp.reply()).code);
    expect(codes).toEqual([250, 550, 250, 354]);
    smtp.write("Subject: pipelined\r\n\r\nok\r\n.\r\nQUIT\r\n");
    expect((await smtp.reply()).code).toBe(250);
    expect((await smtp.reply()).code).toBe(221);
    smtp.close();
  });

  test("bare LF line endings, dot-stuffing, 8-bit and UTF-8 addresses; a bare-LF dot never ends DATA (no smuggling)", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    expect((await smtp.command("MAIL FROM:<jörg@exämple.de> SMTPUTF8 BODY=8BITMIME")).code).toBe(250);
    expect((await smtp.command(`RCPT TO:<${at("hello", "beta")}>`)).code).toBe(250);
    expect((await smtp.command(`RCPT TO:<${at("jörg", "beta")}>`)).code).toBe(550);
    expect((await smtp.command("DATA")).code).toBe(354);
    // Bare LFs throughout, a dot-stuffed line, raw UTF-8 in a header and the body.
    // Only CRLF.CRLF ends DATA: "\n.\n" followed by a command stays message text (SMTP smuggling).
    smtp.write(
      "Subject: Grüße\nFrom: Jörg <jörg@exämple.de>\nContent-Type: text/plain; charset=utf-8\n" +
        "Content-Transfer-Encoding: 8bit\n\n..leading dot\nÄrger über Öl\n.\nMAIL FROM:<smuggled@example.com>\n\r\n.\r\n",
    );
    const end = await smtp.reply();
    expect(end.code).toBe(250);
    expect((await smtp.command("NOOP")).code).toBe(250);
    const [event] = await eventsOf(queueIdOf(end.raw)!);
    expect(event!.source.mail_from).toBe("jörg@exämple.de");
    expect(event!.data.subject).toBe("Grüße");
    expect(event!.data.text).toContain(".leading dot\n");
    expect(event!.data.text).not.toContain("..leading");
    expect(event!.data.text).toContain("Ärger über Öl");
    expect(event!.data.text).toContain("MAIL FROM:<smuggled@example.com>");
    smtp.close();
  });

  test("size: 552 5.3.4 when SIZE announces too much, and when the client lies in SIZE", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    expect((await smtp.command(`MAIL FROM:<a@example.com> SIZE=${MAX_SIZE + 1}`)).raw).toMatch(/^552 5\.3\.4 /);
    const before = mailCount(app);
    const big = `Subject: big\r\n\r\n${`${"y".repeat(998)}\r\n`.repeat(2200)}`;
    const r = await smtp.sendMail("a@example.com", [at("hello", "beta")], big, " SIZE=1000");
    expect(r.end!.raw).toMatch(/^552 5\.3\.4 /);
    expect(mailCount(app)).toBe(before);
    // The session is still usable.
    expect(
      (await smtp.sendMail("a@example.com", [at("hello", "beta")], "Subject: small\r\n\r\nok\r\n")).end!.code,
    ).toBe(250);
    smtp.close();
  });

  test("huge headers are accepted and capped in the event", async () => {
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    const headers = Array.from({ length: 2000 }, (_, i) => `X-Filler-${i}: ${"h".repeat(60)}`).join("\r\n");
    const r = await smtp.sendMail(
      "a@example.com",
      [at("hello", "beta")],
      `Subject: many headers\r\n${headers}\r\n\r\nbody\r\n`,
    );
    expect(r.end!.code).toBe(250);
    const [event] = await eventsOf(queueIdOf(r.end!.raw)!);
    expect(event!.data.subject).toBe("many headers");
    expect(event!.data.headers.length).toBeLessThanOrEqual(500);
    expect(event!.data.parse_warnings.join(" ")).toContain("header");
    smtp.close();
  });

  test("a client that disconnects mid-DATA leaves nothing committed", async () => {
    const before = mailCount(app);
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    await smtp.command("MAIL FROM:<a@example.com>");
    await smtp.command(`RCPT TO:<${at("hello", "beta")}>`);
    await smtp.command("DATA");
    const dataStage = { stage: "data" };
    const dataBefore = await metric(app.metrics, "agentowl_smtp_stage_total", dataStage);
    smtp.write("Subject: cut\r\n\r\nhalf a mess");
    smtp.close();
    // The server has finished with the DATA (its outcome counted): whatever it would commit, it has by now.
    await until(
      "the DATA stage counted",
      async () => (await metric(app.metrics, "agentowl_smtp_stage_total", dataStage)) > dataBefore,
    );
    expect(mailCount(app)).toBe(before);
  });

  test("an internal failure is 451 4.3.0 with a generic text: never a bounce, never the error's words", async () => {
    sqliteOf(app).handle.sqlite.run("ALTER TABLE mail_messages RENAME TO mail_messages_away");
    try {
      const { smtp } = await SmtpDialogue.open(app.smtp.port);
      await smtp.command("EHLO x");
      const r = await smtp.sendMail("a@example.com", [at("hello", "beta")], "Subject: x\r\n\r\ny\r\n");
      expect(r.end!.raw).toBe("451 4.3.0 local error in processing; try again later");
      smtp.close();
    } finally {
      sqliteOf(app).handle.sqlite.run("ALTER TABLE mail_messages_away RENAME TO mail_messages");
    }
  });

  test("per-stage counters and latencies are on /metrics; logs carry the queue id", async () => {
    const text = await (await fetch(`${app.url}/metrics`)).text();
    for (const stage of ["connect", "mail", "rcpt", "data", "spool", "commit", "parse", "normalize"]) {
      expect(text).toMatch(new RegExp(`agentowl_smtp_stage_total\\{stage="${stage}",outcome="ok"\\} [1-9]`));
    }
    // No DNS here: sender auth ran and said temperror.
    expect(text).toMatch(/agentowl_smtp_stage_total\{stage="auth",outcome="temperror"\} [1-9]/);
    expect(text).toContain('agentowl_smtp_stage_total{stage="rcpt",outcome="refused"}');
    expect(text).toMatch(/agentowl_smtp_stage_duration_seconds_count\{stage="spool"\} [1-9]/);
    expect(logLines.some((l) => l.includes('"mail queued"') && /"queue_id":"msg_/.test(l))).toBe(true);
  });
});

describe("TLS", () => {
  test("STARTTLS (swaks) with the certificate generated into the data dir, never the library's demo one", async () => {
    // Asynchronously: the listener runs in this process and must answer while swaks talks.
    if (!Bun.which("swaks")) throw new Error("swaks is not installed (apt-get install swaks): .ci/run installs it");
    const proc = Bun.spawn(
      [
        "swaks",
        "--server",
        `127.0.0.1:${app.smtp.port}`,
        "--to",
        at("hello", "beta"),
        "--from",
        "a@example.com",
        "--tls",
        "--header",
        "Subject: over TLS",
        "--body",
        "secret body",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const swaks = {
      stdout: await new Response(proc.stdout).text(),
      stderr: await new Response(proc.stderr).text(),
      status: await proc.exited,
    };
    expect(swaks.status, swaks.stdout + swaks.stderr).toBe(0);
    expect(swaks.stdout).toContain("<-  220 2.0.0 Ready to start TLS");
    expect(swaks.stdout).toContain('=== TLS peer DN="/CN=agentowl.lan"');
    const queued = /<~ {2}250 2\.0\.0 queued as (msg_\w+)/.exec(swaks.stdout)?.[1];
    expect(queued).toBeDefined();
    expect(sqliteOf(app).mail.get(queued!)!.tls).toBe(true);
    const [event] = await eventsOf(queued!);
    expect(event!.source.tls).toBe(true);

    // The certificate presented is the one in <data>/tls/cert.pem.
    const { smtp } = await SmtpDialogue.open(app.smtp.port);
    await smtp.command("EHLO x");
    expect((await smtp.command("STARTTLS")).code).toBe(220);
    const pem = readFileSync(join(root, "main", "tls", "cert.pem"), "utf8");
    const presented = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect(
        { socket: (smtp as unknown as { socket: import("node:net").Socket }).socket, rejectUnauthorized: false },
        () => {
          resolve(s.getPeerX509Certificate()!.toString());
          s.destroy();
        },
      );
      s.on("error", reject);
    });
    expect(presented.replace(/\s/g, "")).toBe(pem.replace(/\s/g, ""));
    expect(statSync(join(root, "main", "tls", "key.pem")).mode & 0o777).toBe(0o600);
    expect([...stderrLines, ...logLines].join("\n")).not.toContain("built-in default TLS certificate");
  });
});

describe("limits", () => {
  test("per-IP rate: 421 4.7.0 and the connection closes; per-tenant rate: 451 4.7.1", async () => {
    const limited = await start("limited", { AGENTOWL_SMTP_RATE_PER_IP: "3", AGENTOWL_SMTP_RATE_PER_TENANT: "2" });
    try {
      await seed(limited);
      const { smtp } = await SmtpDialogue.open(limited.smtp.port);
      await smtp.command("EHLO x");
      // Tenant beta: two messages, then its recipients wait; gamma is not affected.
      expect((await smtp.sendMail("a@example.com", [at("hello", "beta")], "Subject: 1\r\n\r\n1\r\n")).end!.code).toBe(
        250,
      );
      expect((await smtp.sendMail("a@example.com", [at("hello", "beta")], "Subject: 2\r\n\r\n2\r\n")).end!.code).toBe(
        250,
      );
      const third = await smtp.sendMail(
        "a@example.com",
        [at("hello", "beta"), at("hello", "gamma")],
        "Subject: 3\r\n\r\n3\r\n",
      );
      expect(third.rcpts[0]!.raw).toMatch(/^451 4\.7\.1 /);
      expect(third.rcpts[1]!.code).toBe(250);
      expect(third.end!.code).toBe(250);
      // The address has used its 3 messages a minute.
      expect((await smtp.command("MAIL FROM:<a@example.com>")).raw).toMatch(/^421 4\.7\.0 /);
      expect(await smtp.closedByServer()).toBe(true);
    } finally {
      await limited.stop();
    }
  });

  test("connections per IP: one more is 421 4.7.0; the greeting waits smtp_greeting_delay; an early talker and an idle client are refused", async () => {
    const strict = await start("strict", {
      AGENTOWL_SMTP_MAX_CONNECTIONS_PER_IP: "2",
      AGENTOWL_SMTP_GREETING_DELAY: "300ms",
      AGENTOWL_SMTP_IDLE_TIMEOUT: "1s",
    });
    try {
      const t0 = performance.now();
      const a = await SmtpDialogue.open(strict.smtp.port);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
      const b = await SmtpDialogue.open(strict.smtp.port);
      const c = await SmtpDialogue.open(strict.smtp.port);
      expect(c.greeting!.raw).toMatch(/^421 4\.7\.0 /);
      a.smtp.close();
      b.smtp.close();
      await until(
        "the server to count both closes",
        async () => (await metric(strict.metrics, "agentowl_smtp_connections")) === 0,
      );
      const early = await SmtpDialogue.open(strict.smtp.port, { greeting: false });
      early.smtp.write("EHLO too-soon\r\n");
      const replies = [await early.smtp.reply(), await early.smtp.reply().catch(() => null)];
      expect(replies.some((r) => r?.code === 421 && r.raw.includes("talk too soon"))).toBe(true);
      early.smtp.close();
      // A client that goes quiet is told so and disconnected after smtp_idle_timeout.
      const idle = await SmtpDialogue.open(strict.smtp.port);
      await idle.smtp.command("EHLO x");
      const t1 = performance.now();
      expect((await idle.smtp.reply(5000)).raw).toMatch(/^421 /);
      expect(await idle.smtp.closedByServer()).toBe(true);
      expect(performance.now() - t1).toBeGreaterThanOrEqual(900);
    } finally {
      await strict.stop();
    }
  });

  test("past smtp_max_connections in all: 421 4.7.0, and the next connection after one closes is served", async () => {
    const small = await start("small", { AGENTOWL_SMTP_MAX_CONNECTIONS: "2" });
    try {
      await seed(small);
      // Both in a transaction: neither is shed for a newcomer (smtp_shed_threshold).
      const busy = async () => {
        const x = await SmtpDialogue.open(small.smtp.port);
        await x.smtp.command("EHLO x");
        await x.smtp.command("MAIL FROM:<a@example.com>");
        expect((await x.smtp.command(`RCPT TO:<${at("hello", "beta")}>`)).code).toBe(250);
        return x;
      };
      const a = await busy();
      const b = await busy();
      expect([a.greeting!.code, b.greeting!.code]).toEqual([220, 220]);
      const c = await SmtpDialogue.open(small.smtp.port);
      expect(c.greeting!.raw).toMatch(/^421 4\.7\.0 .*too many connections/);
      expect(await c.smtp.closedByServer()).toBe(true);
      a.smtp.close();
      await until(
        "the server to count the close",
        async () => (await metric(small.metrics, "agentowl_smtp_connections")) === 1,
      );
      const d = await SmtpDialogue.open(small.smtp.port);
      expect(d.greeting!.code).toBe(220);
      for (const x of [b, d]) x.smtp.close();
    } finally {
      await small.stop();
    }
  });

  test("a full spool disk answers 452 4.3.1, commits nothing, and recovers", async () => {
    const name = "fulldisk";
    const spoolDir = join(root, name, "spool");
    mkdirSync(join(root, name), { recursive: true });
    const unmount = mountTmpfs(spoolDir, "192k");
    if (!unmount) {
      console.warn("skipped: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
      return;
    }
    const full = await start(name);
    try {
      await seed(full);
      const { smtp } = await SmtpDialogue.open(full.smtp.port);
      await smtp.command("EHLO x");
      const before = mailCount(full);
      const big = `Subject: big\r\n\r\n${`${"z".repeat(76)}\r\n`.repeat(3000)}`;
      expect((await smtp.sendMail("a@example.com", [at("hello", "beta")], big)).end!.raw).toBe(
        "452 4.3.1 insufficient system storage; try again later",
      );
      expect(mailCount(full)).toBe(before);
      expect(
        (await smtp.sendMail("a@example.com", [at("hello", "beta")], "Subject: small\r\n\r\nfits\r\n")).end!.code,
      ).toBe(250);

      smtp.close();
    } finally {
      await full.stop();
      unmount();
    }
  });

  test("a read-only spool disk answers 452 4.3.1, and mail flows once it is writable again", async () => {
    const name = "readonly";
    const spoolDir = join(root, name, "spool");
    const unmount = mountTmpfs(spoolDir, "1m");
    if (!unmount) {
      console.warn("skipped: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
      return;
    }
    expect(spawnSync("mount", ["-o", "remount,ro", spoolDir]).status).toBe(0);
    const ro = await start(name);
    try {
      await seed(ro);
      const { smtp } = await SmtpDialogue.open(ro.smtp.port);
      await smtp.command("EHLO x");
      const before = mailCount(ro);
      expect(
        (await smtp.sendMail("a@example.com", [at("hello", "beta")], "Subject: ro\r\n\r\nread-only\r\n")).end!.raw,
      ).toBe("452 4.3.1 insufficient system storage; try again later");
      expect(mailCount(ro)).toBe(before);
      expect(spawnSync("mount", ["-o", "remount,rw", spoolDir]).status).toBe(0);
      expect(
        (await smtp.sendMail("a@example.com", [at("hello", "beta")], "Subject: again\r\n\r\nwritable\r\n")).end!.code,
      ).toBe(250);
      smtp.close();
    } finally {
      await ro.stop();
      unmount();
    }
  });
});

describe("sender authentication", () => {
  const signed = join(CORPUS, "dkim", "rfc8463", "signed.eml");
  test.skipIf(!Bun.file(signed).size)(
    "a DKIM-signed message over SMTP: dkim and dmarc pass, SPF softfail from an unlisted address, with DNS from a server on 127.0.0.1",
    async () => {
      const zone = JSON.parse(readFileSync(join(CORPUS, "dkim", "rfc8463", "dns.json"), "utf8")) as DnsZone;
      zone["_dmarc.football.example.com"] = { TXT: ["v=DMARC1; p=reject"] };
      const dns = await startDnsServer(zone);
      const authed = await start("dkim", { AGENTOWL_DNS_SERVERS: dns.servers.join(","), AGENTOWL_DNS_TIMEOUT: "2s" });
      try {
        await seed(authed);
        const { smtp } = await SmtpDialogue.open(authed.smtp.port);
        await smtp.command("EHLO mail.football.example.com");
        const r = await smtp.sendMail("joe@football.example.com", [at("hello", "beta")], readFileSync(signed, "utf8"));
        expect(r.end!.code).toBe(250);
        smtp.close();
        const [event] = await eventsOf(queueIdOf(r.end!.raw)!, authed);
        expect(event!.data.auth).toEqual({ spf: "softfail", dkim: "pass", dmarc: "pass", arc: "none" });
        expect(
          event!.data.auth_details.dkim.map((d: { selector: string; result: string }) => [d.selector, d.result]),
        ).toEqual([
          ["brisbane", "pass"],
          ["test", "pass"],
        ]);
        expect(dns.queries.some((q) => q.name === "brisbane._domainkey.football.example.com" && q.type === "TXT")).toBe(
          true,
        );
      } finally {
        await authed.stop();
        await dns.close();
      }
    },
  );
});

describe("the corpus", () => {
  const files = (() => {
    const dir = join(CORPUS, "email");
    const out: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else if (e.name.endsWith(".eml")) out.push(join(d, e.name));
      }
    };
    try {
      walk(dir);
    } catch {
      // no corpus beside this checkout
    }
    return out.sort();
  })();

  test.skipIf(files.length === 0)(
    "every .eml of ../shared/corpus/email goes through the whole pipeline and yields an event",
    async () => {
      expect(files.length).toBeGreaterThanOrEqual(100);
      const transport = nodemailer.createTransport({
        host: "127.0.0.1",
        port: app.smtp.port,
        secure: false,
        ignoreTLS: true,
        pool: true,
        maxConnections: 4,
        maxMessages: Infinity,
      });
      const ids = new Map<string, string>();
      try {
        for (const file of files) {
          const info = await transport.sendMail({
            envelope: { from: "corpus@example.com", to: [at("hello", "gamma")] },
            raw: readFileSync(file),
          });
          const id = queueIdOf(info.response);
          expect(id, `${relative(CORPUS, file)}: ${info.response}`).not.toBeNull();
          ids.set(file, id!);
        }
      } finally {
        transport.close();
      }
      for (const [file, id] of ids) {
        const events = await eventsOf(id);
        expect(events.length, relative(CORPUS, file)).toBe(1);
        expect(events[0]!.type).toBe("email.received");
        expect(Array.isArray(events[0]!.data.parse_warnings)).toBe(true);
      }
      // The one that crashes mailparser's address parser was contained and said so.
      const overflow = [...ids].find(([f]) => f.endsWith("stack-overflow.eml"));
      if (overflow) expect((await eventsOf(overflow[1]))[0]!.data.parse_warnings.length).toBeGreaterThan(0);
    },
  );
});
