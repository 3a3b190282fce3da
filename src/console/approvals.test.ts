import { describe, expect, test } from "bun:test";
import { actionText, ruleText, timeLeft } from "./approvals.ts";

describe("what the approvals page says", () => {
  test("time left is rounded up to what a person reads, and expired at zero", () => {
    expect(timeLeft(0)).toBe("expired");
    expect(timeLeft(-5)).toBe("expired");
    expect(timeLeft(1)).toBe("1 s left");
    expect(timeLeft(59_001)).toBe("1 min left");
    expect(timeLeft(12 * 60_000)).toBe("12 min left");
    expect(timeLeft(3 * 3_600_000 + 12 * 60_000)).toBe("3 h 12 min left");
    expect(timeLeft(5 * 86_400_000)).toBe("5 days left");
  });

  test("the rule that asked is numbered from 1 with its name and reason, as the CLI says it", () => {
    expect(
      ruleText({ name: "guard", version: 2, rule: 0, rule_name: "refunds", reason: "refunds need a person" }),
    ).toBe("policy guard v2, rule #1 refunds: refunds need a person");
    expect(ruleText({ name: "base", version: 1, global: true })).toBe("global policy base v1");
  });

  test("the action in words", () => {
    expect(actionText({ kind: "dispatch", target: "crm" })).toBe("dispatch to crm");
    expect(actionText({ kind: "tool.call", tool: "refund", args: {} })).toBe("tool.call refund");
  });
});
