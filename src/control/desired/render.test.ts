import { describe, expect, test } from "bun:test";
import { parseDesired } from "./parse.ts";
import { type Change, plan } from "./plan.ts";
import { renderDesired, renderPlan, summarize } from "./render.ts";
import type { DesiredState } from "./schema.ts";

const change = (op: Change["op"], kind: Change["kind"], name: string, fields: Change["fields"] = []): Change => ({
  op,
  tenant: "beta",
  kind,
  name,
  fields,
});

describe("renderPlan", () => {
  test("one line per change, fields under updates, unchanged only counted", () => {
    const changes = [
      change("unchanged", "tenants", "beta"),
      change("create", "endpoints", "erp"),
      change("update", "routes", "hello-to-crm", [
        { path: "to", from: ["crm"], to: ["crm", "erp"] },
        { path: "priority", to: 10 },
        { path: "match.agent", from: "hello" },
      ]),
      change("unchanged", "bindings", "mail"),
      change("delete", "bindings", "old"),
    ];
    expect(renderPlan(changes)).toBe(
      [
        "+ create endpoint beta/erp",
        "~ update route beta/hello-to-crm",
        '  to: ["crm"] → ["crm","erp"]',
        "  priority: (unset) → 10",
        '  match.agent: "hello" → (unset)',
        "- delete binding beta/old",
        "1 created, 1 updated, 2 unchanged, 1 deleted",
        "",
      ].join("\n"),
    );
  });

  test("a tenant is named once", () => {
    expect(renderPlan([change("create", "tenants", "beta")])).toStartWith("+ create tenant beta\n");
  });

  test("a long value is cut short", () => {
    const text = renderPlan([
      change("update", "templates", "t", [{ path: "instructions", from: "a".repeat(500), to: "b" }]),
    ]);
    expect(text.split("\n")[1]).toBe(`  instructions: "${"a".repeat(78)}… → "b"`);
  });

  test("nothing to do still says so", () => {
    expect(renderPlan([])).toBe("0 created, 0 updated, 0 unchanged, 0 deleted\n");
  });
});

describe("summarize", () => {
  test("counts each kind of change", () => {
    const changes = [
      change("create", "endpoints", "a"),
      change("create", "routes", "b"),
      change("unchanged", "tenants", "beta"),
      change("delete", "bindings", "c"),
    ];
    expect(summarize(changes)).toEqual({ created: 2, updated: 0, unchanged: 1, deleted: 1 });
  });
});

describe("renderDesired", () => {
  test("renders a file that parses back to the same state: applying it changes nothing", () => {
    const state: DesiredState = {
      tenants: [
        {
          tenant: { name: "beta", display_name: 'Beta: "quoted" & #hash' },
          endpoints: [{ name: "crm", url: "http://10.0.0.5/hook", retry: { max_attempts: 3 } }],
          bindings: [
            { name: "mail", type: "email", addresses: ["hello"] },
            { name: "hook", type: "webhook", verify: { scheme: "none" }, rate_per_minute: 60 },
          ],
          routes: [{ name: "all", match: { channel: "email", "data.subject": { contains: "x" } }, to: ["crm"] }],
          policies: [{ name: "guard", rules: [{ when: { agent: "hello" }, effect: "deny", reason: "no\nmore" }] }],
          templates: [],
        },
      ],
    };
    const text = renderDesired(state);
    expect(text.startsWith("apiVersion: agentowl/v1\n")).toBe(true);
    expect(text).not.toContain("templates");
    const parsed = parseDesired(text, "export.yaml");
    if ("errors" in parsed) throw new Error(JSON.stringify(parsed.errors));
    expect(plan(parsed.state, state, { prune: true }).every((c) => c.op === "unchanged")).toBe(true);
  });
});
