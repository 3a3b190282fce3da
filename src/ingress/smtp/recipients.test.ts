import { describe, expect, test } from "bun:test";
import { bindEmail, startSmtpIngress } from "../../../test/helpers/smtp-ingress.ts";
import { SmtpDialogue } from "../../../test/helpers/smtp.ts";
import { tempStorages } from "../../../test/helpers/storage.ts";
import { ManualClock } from "../../core/clock.ts";
import { SmtpReply } from "./guard.ts";
import { parseRecipient, RecipientStage } from "./recipients.ts";

describe("parseRecipient", () => {
  const cases: [string, ReturnType<typeof parseRecipient>][] = [
    ["hello@beta.agentowl.lan", { agent: "hello", tag: null, tenant: "beta" }],
    ["Hello@BETA.AgentOwl.LAN", { agent: "hello", tag: null, tenant: "beta" }],
    ["hello+Invoices@beta.agentowl.lan", { agent: "hello", tag: "invoices", tenant: "beta" }],
    ["hello+@beta.agentowl.lan", { agent: "hello", tag: null, tenant: "beta" }],
    ["hello@beta.agentowl.lan.", { agent: "hello", tag: null, tenant: "beta" }],
    ["hello@agentowl.lan", null],
    ["hello@x.beta.agentowl.lan", null],
    ["hello@beta.example.com", null],
    ["+tag@beta.agentowl.lan", null],
    ["@beta.agentowl.lan", null],
    ["hello", null],
    ["hello@beta.evilagentowl.lan", null],
  ];
  for (const [address, expected] of cases) {
    test(`${address} → ${JSON.stringify(expected)}`, () =>
      expect(parseRecipient(address, "agentowl.lan")).toEqual(expected));
  }
});

describe("the RCPT stage, against a real storage with an email binding", () => {
  const storages = tempStorages();
  const stageOver = async (ratePerTenant = 100, clock = new ManualClock()) => {
    const storage = storages();
    await bindEmail(storage, "beta", "mail", ["hello"]);
    await bindEmail(storage, "gamma", "inbox", ["hello"]);
    return new RecipientStage({ resources: storage.resources, mailDomain: "agentowl.lan", ratePerTenant, clock });
  };

  test("an address an email binding lists resolves to its tenant, agent, tag and binding", async () => {
    const stage = await stageOver();
    expect(await stage.check("Hello+Invoices@BETA.agentowl.lan")).toEqual({
      address: "Hello+Invoices@BETA.agentowl.lan",
      tenant: "beta",
      agent: "hello",
      tag: "invoices",
      binding: "mail",
    });
  });

  test("unknown agent, unknown tenant or another domain: one answer, 550 5.1.1", async () => {
    const stage = await stageOver();
    for (const address of ["nobody@beta.agentowl.lan", "hello@delta.agentowl.lan", "hello@example.com"]) {
      const e = await stage.check(address).catch((e) => e);
      expect(e).toBeInstanceOf(SmtpReply);
      expect([e.responseCode, e.message, e.outcome]).toEqual([
        550,
        `5.1.1 <${address}>: no such recipient here`,
        "refused",
      ]);
    }
  });

  test("an address an agent's active email tool provisioned is accepted while the tool is active, and refused after", async () => {
    const storage = storages();
    await bindEmail(storage, "beta", "mail", ["hello"]);
    const active = new Set(["beta/support"]);
    const stage = new RecipientStage({
      resources: storage.resources,
      mailDomain: "agentowl.lan",
      ratePerTenant: 100,
      clock: new ManualClock(),
      agentAddresses: {
        lookup: (tenant, agent) => (active.has(`${tenant}/${agent}`) ? { binding: `agent:${agent}` } : null),
      },
    });
    expect(await stage.check("Support+x@beta.agentowl.lan")).toEqual({
      address: "Support+x@beta.agentowl.lan",
      tenant: "beta",
      agent: "support",
      tag: "x",
      binding: "agent:support",
    });
    // A binding's address still resolves to its binding.
    expect((await stage.check("hello@beta.agentowl.lan")).binding).toBe("mail");
    active.clear();
    const e = await stage.check("support@beta.agentowl.lan").catch((e) => e);
    expect([e.responseCode, e.message]).toEqual([550, "5.1.1 <support@beta.agentowl.lan>: no such recipient here"]);
  });

  test("a tenant over its rate is refused 451 4.7.1 until its bucket refills; another tenant is not held up", async () => {
    const clock = new ManualClock();
    const stage = await stageOver(2, clock);
    await stage.check("hello@beta.agentowl.lan");
    await stage.check("hello@beta.agentowl.lan");
    const e = await stage.check("hello@beta.agentowl.lan").catch((e) => e);
    expect(e).toBeInstanceOf(SmtpReply);
    expect([e.responseCode, e.message, e.outcome]).toEqual([
      451,
      "4.7.1 <hello@beta.agentowl.lan>: too much mail for this recipient right now; try again later",
      "rate_limited",
    ]);
    expect((await stage.check("hello@gamma.agentowl.lan")).tenant).toBe("gamma");
    // Two a minute: one token again after 30 s.
    clock.advance(29_999);
    expect(await stage.check("hello@beta.agentowl.lan").catch((e) => e.responseCode)).toBe(451);
    clock.advance(1);
    expect((await stage.check("hello@beta.agentowl.lan")).tenant).toBe("beta");
  });

  test("the recipient past smtp_max_recipients is answered 452 4.5.3 by the listener; the ones before are taken", async () => {
    const smtp = await startSmtpIngress({ env: { AGENTOWL_SMTP_MAX_RECIPIENTS: "2" } });
    try {
      await bindEmail(smtp.storage, "beta", "mail", ["a", "b", "c"]);
      const { smtp: client } = await SmtpDialogue.open(smtp.port);
      expect((await client.command("EHLO client.test")).code).toBe(250);
      expect((await client.command("MAIL FROM:<sender@example.com>")).code).toBe(250);
      const replies = [];
      for (const r of ["a", "b", "c"]) replies.push((await client.command(`RCPT TO:<${r}@beta.agentowl.lan>`)).raw);
      expect(replies.map((r) => r.slice(0, 3))).toEqual(["250", "250", "452"]);
      expect(replies[2]).toBe("452 4.5.3 Error: too many recipients");
      client.close();
    } finally {
      await smtp.stop();
    }
  });
});
