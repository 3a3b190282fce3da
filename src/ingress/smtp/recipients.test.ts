import { describe, expect, test } from "bun:test";
import { parseRecipient } from "./recipients.ts";

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
