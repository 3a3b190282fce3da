import { describe, expect, test } from "bun:test";
import type { SMTPServerAddress, SMTPServerSession } from "smtp-server";
import { ManualClock } from "../../core/clock.ts";
import { Metrics } from "../../core/metrics.ts";
import type { MailRecipient } from "../../store/index.ts";
import { SmtpReply } from "./guard.ts";
import { budgetOf, RECHECK_MS, type SessionState, Sessions } from "./session.ts";

const LIMITS = {
  maxMessageBytes: 1 << 20,
  maxRecipients: 100,
  maxConnections: 100,
  maxConnectionsPerIp: 2,
  idleTimeoutMs: 60_000,
  greetingTimeoutMs: 30_000,
  dataTimeoutMs: 600_000,
  maxCommands: 1000,
  shedThreshold: 80,
  greetingDelayMs: 0,
  ratePerIp: 2,
  ratePerTenant: 100,
};

const recipient = (address: string): MailRecipient => ({
  address,
  tenant: "beta",
  agent: address.split("@")[0]!.toLowerCase(),
  tag: null,
  binding: "mail",
});

/** A session as smtp-server keeps it: its address and its current envelope (replaced by RSET). */
const sessionFrom = (remoteAddress: string) =>
  ({ remoteAddress, envelope: { mailFrom: false, rcptTo: [] } }) as unknown as SMTPServerSession;
const MAIL = { address: "sender@example.com", args: false } as SMTPServerAddress;

function sessions(clock = new ManualClock()) {
  const rearmed: SessionState[] = [];
  const s = new Sessions({
    limits: LIMITS,
    metrics: new Metrics(),
    clock,
    count: () => {},
    name: "mx.test",
    rearm: (state) => rearmed.push(state),
  });
  return { sessions: s, clock, rearmed };
}

describe("the idle budgets", () => {
  const at = (progressAt: number, greeted: boolean, dataStartedAt: number | null = null) => ({
    progressAt,
    greeted,
    dataStartedAt,
  });

  test("until the first EHLO/HELO the greeting budget runs from the connect", () => {
    expect(budgetOf(at(1000, false), "client", LIMITS, 5000)).toEqual({ phase: "greeting", deadline: 31_000 });
  });

  test("after it, the idle budget runs from the client's last progress", () => {
    expect(budgetOf(at(1000, true), "client", LIMITS, 5000)).toEqual({ phase: "idle", deadline: 61_000 });
  });

  test("a DATA has its own budget from its start, whatever the client did before", () => {
    expect(budgetOf(at(1000, true, 2000), "data", LIMITS, 5000)).toEqual({ phase: "data", deadline: 602_000 });
  });

  test("while the appliance owes the answer nothing runs out: only a look again later", () => {
    expect(budgetOf(at(0, true), "appliance", LIMITS, 5000)).toEqual({ phase: null, deadline: 5000 + RECHECK_MS });
  });

  test("progress moves the idle budget's start to the clock's now and re-arms the check", async () => {
    const { sessions: all, clock, rearmed } = sessions();
    const session = sessionFrom("192.0.2.1");
    const s = all.state(session);
    const connectedAt = clock.now();
    expect(s.progressAt).toBe(connectedAt);
    clock.advance(45_000);
    await all.onMailFrom(MAIL, session);
    expect(s.progressAt).toBe(connectedAt + 45_000);
    expect(rearmed).toEqual([s]);
    s.greeted = true;
    expect(budgetOf(s, "client", LIMITS, clock.now()).deadline).toBe(connectedAt + 45_000 + LIMITS.idleTimeoutMs);
  });

  test("the DATA budget counts from DATA's start; its end, accepted or not, starts the idle budget again", () => {
    const { sessions: all, clock } = sessions();
    const s = all.state(sessionFrom("192.0.2.1"));
    s.commands = 7;
    all.dataStarted(s);
    expect(s.dataStartedAt).toBe(clock.now());
    clock.advance(10_000);
    all.dataEnded(s, false);
    expect([s.dataStartedAt, s.progressAt, s.commands]).toEqual([null, clock.now(), 7]);
    all.dataStarted(s);
    clock.advance(10_000);
    all.dataEnded(s, true);
    // An accepted message starts the command budget again too.
    expect([s.dataStartedAt, s.progressAt, s.commands]).toEqual([null, clock.now(), 0]);
  });
});

describe("the session", () => {
  test("at most smtp_max_connections_per_ip from one address: the next is refused 421 4.7.0 until one closes", async () => {
    const { sessions: all } = sessions();
    const [a, b, c] = [sessionFrom("192.0.2.1"), sessionFrom("192.0.2.1"), sessionFrom("192.0.2.1")];
    await all.onConnect(a);
    await all.onConnect(b);
    await all.onConnect(sessionFrom("192.0.2.2"));
    const e = await all.onConnect(c).catch((e) => e);
    expect(e).toBeInstanceOf(SmtpReply);
    expect([e.responseCode, e.message, e.outcome]).toEqual([
      421,
      "4.7.0 too many connections from your address; try again later",
      "too_many",
    ]);
    expect(all.openFrom("192.0.2.1")).toBe(2);
    all.onClose(a);
    all.onClose(a); // closed twice: counted once
    expect(all.openFrom("192.0.2.1")).toBe(1);
    await all.onConnect(c);
    expect(all.openFrom("192.0.2.1")).toBe(2);
  });

  test("MAIL takes a token of the client's rate: past it 421 4.7.0 until the bucket refills", async () => {
    const { sessions: all, clock } = sessions();
    const session = sessionFrom("192.0.2.1");
    await all.onMailFrom(MAIL, session);
    await all.onMailFrom(MAIL, session);
    const e = await all.onMailFrom(MAIL, session).catch((e) => e);
    expect([e.responseCode, e.message, e.outcome]).toEqual([
      421,
      "4.7.0 too many messages from your address; try again later",
      "rate_limited",
    ]);
    await all.onMailFrom(MAIL, sessionFrom("192.0.2.2"));
    clock.advance(30_000); // two a minute
    await all.onMailFrom(MAIL, session);
  });

  test("RCPT joins the transaction MAIL opened (the same address again replaces its entry); RSET's new envelope drops it", async () => {
    const { sessions: all } = sessions();
    const session = sessionFrom("192.0.2.1");
    expect(() => all.addRecipient(session, recipient("a@beta.agentowl.lan"))).toThrow("RCPT without a transaction");
    await all.onMailFrom(MAIL, session);
    all.addRecipient(session, recipient("a@beta.agentowl.lan"));
    all.addRecipient(session, recipient("b@beta.agentowl.lan"));
    all.addRecipient(session, recipient("A@BETA.agentowl.lan"));
    expect(all.transaction(session)!.recipients.map((r) => r.address)).toEqual([
      "A@BETA.agentowl.lan",
      "b@beta.agentowl.lan",
    ]);
    // RSET (or a new EHLO): smtp-server gives the session a new envelope.
    (session as { envelope: unknown }).envelope = { mailFrom: false, rcptTo: [] };
    expect(all.transaction(session)).toBeUndefined();
  });
});
