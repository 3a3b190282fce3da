import { describe, expect, test } from "bun:test";
import type { Change } from "./plan.ts";
import { renderPlan, summarize } from "./render.ts";

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
