import { describe, expect, test } from "bun:test";
import type { Envelope } from "../events/envelope.ts";
import type { PolicySpec } from "../control/resources/specs.ts";
import { type Action, compilePolicy, decide, type Effect, PolicyCache } from "./engine.ts";

const mail = (over: Partial<Envelope["data"]> = {}, env: Partial<Envelope> = {}): Envelope => ({
  id: "evt_01M80MPAZ9E8MRS0YPNR25EEF9",
  version: 1,
  type: "email.received",
  tenant: "beta",
  agent: "hello",
  channel: "email",
  source: { binding: "mail", remote_ip: "10.0.0.9" },
  received_at: "2026-11-21T14:02:11.043Z",
  trace_id: "T-1",
  idempotency_key: "<m1@example.com>",
  data: {
    from: { address: "ann@example.com" },
    subject: "Hello",
    priority: 3,
    auth: { spf: "pass", dkim: "pass", dmarc: "pass", arc: "none" },
    ...over,
  },
  ...env,
});
const toCrm: Action = { kind: "dispatch", target: "crm" };
const toErp: Action = { kind: "dispatch", target: "erp" };
const tool = (name: string, args: Record<string, unknown> = {}): Action => ({ kind: "tool.call", tool: name, args });

// docs/desired-state.md's example policy.
const guard: PolicySpec = {
  name: "guard",
  rules: [
    { when: { channel: "email", "auth.dmarc": "fail" }, effect: "quarantine" },
    {
      when: { target: "crm", "data.subject": { contains: "refund" } },
      effect: "require_approval",
      reason: "refunds need a human",
    },
  ],
};
const ref = { tenant: "beta", name: "guard", version: 3 };

describe("one policy: the first matching rule decides", () => {
  const p = compilePolicy(guard, ref);
  const cases: [string, Envelope, Action, Effect, number | null][] = [
    ["DMARC failure is quarantined", mail({ auth: { dmarc: "fail" } }), toCrm, "quarantine", 0],
    [
      "a refund to the CRM waits for a human",
      mail({ subject: "Please refund order 42" }),
      toCrm,
      "require_approval",
      1,
    ],
    ["a refund to another target is allowed", mail({ subject: "Please refund order 42" }), toErp, "allow", null],
    [
      "DMARC failure wins over refund (first rule)",
      mail({ subject: "refund", auth: { dmarc: "fail" } }),
      toCrm,
      "quarantine",
      0,
    ],
    ["an ordinary mail is allowed by the default", mail(), toCrm, "allow", null],
    [
      "a webhook with failed auth is not mail",
      mail({ auth: { dmarc: "fail" } }, { channel: "webhook" }),
      toCrm,
      "allow",
      null,
    ],
    ["a missing field never matches", mail({ subject: undefined }), toCrm, "allow", null],
  ];
  for (const [name, event, action, effect, rule] of cases) {
    test(name, () => {
      const d = p.decide(event, action);
      expect(d).toMatchObject({ effect, rule, policy: ref });
    });
  }
  test("the decision carries the matched rule's reason and the policy version", () => {
    expect(p.decide(mail({ subject: "refund" }), toCrm)).toEqual({
      effect: "require_approval",
      policy: ref,
      rule: 1,
      reason: "refunds need a human",
    });
  });
});

describe("conditions", () => {
  const one = (when: PolicySpec["rules"][number]["when"]) =>
    compilePolicy({ name: "p", default: "deny", rules: [{ when, effect: "allow" }] }, ref);
  const cases: [string, PolicySpec["rules"][number]["when"], Envelope, Action, boolean][] = [
    ["plain value: equality", { agent: "hello" }, mail(), toCrm, true],
    ["plain value: a different value", { agent: "support" }, mail(), toCrm, false],
    ["equals a number", { "data.priority": { equals: 3 } }, mail(), toCrm, true],
    ["types are not coerced", { "data.priority": "3" }, mail(), toCrm, false],
    ["in a list", { agent: { in: ["support", "hello"] } }, mail(), toCrm, true],
    ["not in a list", { agent: { in: ["support"] } }, mail(), toCrm, false],
    ["contains", { "data.subject": { contains: "ell" } }, mail(), toCrm, true],
    ["contains on a non-text field", { "data.priority": { contains: "3" } }, mail(), toCrm, false],
    ["matches a regular expression", { "data.from.address": { matches: "@example\\.com$" } }, mail(), toCrm, true],
    [
      "matches is anchored by the expression, not implicitly",
      { "data.subject": { matches: "^ell" } },
      mail(),
      toCrm,
      false,
    ],
    ["several operators must all hold", { "data.subject": { contains: "Hel", matches: "o$" } }, mail(), toCrm, true],
    ["several operators, one fails", { "data.subject": { contains: "Hel", in: ["Bye"] } }, mail(), toCrm, false],
    ["a short path finds the field under data", { "auth.spf": "pass" }, mail(), toCrm, true],
    ["the action's target", { target: "crm" }, mail(), toCrm, true],
    ["the action kind", { action: "tool.call" }, mail(), tool("send_email"), true],
    ["a tool name", { tool: "send_email" }, mail(), tool("send_email"), true],
    [
      "a tool argument",
      { "args.to": { matches: "@partner\\.example$" } },
      mail(),
      tool("send_email", { to: "x@partner.example" }),
      true,
    ],
    ["target does not exist for a tool call", { target: "crm" }, mail(), tool("send_email"), false],
    ["an empty when always holds", {}, mail(), toCrm, true],
  ];
  for (const [name, when, event, action, holds] of cases) {
    test(name, () => expect(one(when).decide(event, action).effect).toBe(holds ? "allow" : "deny"));
  }
});

describe("several policies", () => {
  const allowAll = compilePolicy({ name: "open", rules: [] }, { tenant: "beta", name: "open", version: 1 });
  const denyErp = compilePolicy(
    { name: "no-erp", rules: [{ when: { target: "erp" }, effect: "deny" }] },
    { tenant: "beta", name: "no-erp", version: 1 },
  );
  const g = compilePolicy(guard, ref);

  test("the most restrictive decision wins, and names its policy", () => {
    expect(decide([allowAll, denyErp, g], mail({ subject: "refund" }), toErp)).toMatchObject({
      effect: "deny",
      policy: { name: "no-erp" },
      rule: 0,
    });
    expect(decide([allowAll, denyErp, g], mail({ subject: "refund" }), toCrm)).toMatchObject({
      effect: "require_approval",
      policy: { name: "guard" },
    });
    expect(decide([allowAll, denyErp, g], mail(), toCrm)).toMatchObject({
      effect: "allow",
      policy: { name: "open" },
      rule: null,
    });
  });

  test("with no policy at all, the action is allowed and says so", () => {
    expect(decide([], mail(), toCrm)).toEqual({ effect: "allow", policy: null, rule: null, reason: null });
  });

  test("a declared default applies when no rule matches", () => {
    const closed = compilePolicy(
      { name: "closed", default: "deny", rules: [{ when: { target: "crm" }, effect: "allow" }] },
      ref,
    );
    expect(closed.decide(mail(), toErp)).toMatchObject({ effect: "deny", rule: null });
    expect(closed.decide(mail(), toCrm)).toMatchObject({ effect: "allow", rule: 0 });
  });

  test("evaluation is deterministic: the same input always gives the same decision", () => {
    const event = mail({ subject: "refund" });
    const first = decide([allowAll, denyErp, g], event, toCrm);
    for (let i = 0; i < 1000; i++) expect(decide([allowAll, denyErp, g], event, toCrm)).toBe(first);
  });
});

describe("the compile cache", () => {
  test("compiles each version once and keeps only the newest per policy", () => {
    const cache = new PolicyCache();
    const a = cache.get(guard, ref);
    expect(cache.get(guard, ref)).toBe(a);
    const b = cache.get(guard, { ...ref, version: 4 });
    expect(b).not.toBe(a);
    expect(b.ref.version).toBe(4);
    expect(cache.size).toBe(1);
  });
});
