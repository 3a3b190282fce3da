import { describe, expect, test } from "bun:test";
import type { TenantState } from "../resources/validate.ts";
import { type Change, diffFields, plan } from "./plan.ts";
import type { DesiredState } from "./schema.ts";

function tenant(name: string, resources: Partial<Omit<TenantState, "tenant">> = {}): TenantState {
  return { tenant: { name }, endpoints: [], bindings: [], routes: [], policies: [], templates: [], ...resources };
}

const crm = { name: "crm", url: "http://10.0.0.5/", retry: { max_attempts: 8, max_age: "24h" } };
const route = { name: "hello-to-crm", match: { channel: "email" }, to: ["crm"] };
const mail = { name: "mail", type: "email" as const, addresses: ["hello"] };
const beta = (): DesiredState => ({
  tenants: [tenant("beta", { endpoints: [crm], routes: [route], bindings: [mail] })],
});
const empty: DesiredState = { tenants: [] };

/** A plan as "op kind tenant/name" lines, the fields left out. */
const ops = (changes: Change[]) => changes.map((c) => `${c.op} ${c.kind} ${c.tenant}/${c.name}`);

describe("plan", () => {
  test("against an empty appliance, everything is a create: the tenant first, endpoints before the routes that use them", () => {
    expect(ops(plan(beta(), empty, { prune: false }))).toEqual([
      "create tenants beta/beta",
      "create endpoints beta/crm",
      "create routes beta/hello-to-crm",
      "create bindings beta/mail",
    ]);
  });

  test("planning a state against itself changes nothing (apply twice = apply once)", () => {
    const changes = plan(beta(), beta(), { prune: true });
    expect(changes.every((c) => c.op === "unchanged" && c.fields.length === 0)).toBe(true);
    expect(changes).toHaveLength(4);
  });

  test("key order does not matter, at any depth", () => {
    const reordered = { retry: { max_age: "24h", max_attempts: 8 }, url: "http://10.0.0.5/", name: "crm" };
    const current: DesiredState = {
      tenants: [tenant("beta", { endpoints: [reordered], routes: [route], bindings: [mail] })],
    };
    expect(plan(beta(), current, { prune: false }).map((c) => c.op)).toEqual([
      "unchanged",
      "unchanged",
      "unchanged",
      "unchanged",
    ]);
  });

  test("an update lists every field that differs, by dotted path", () => {
    const current: DesiredState = {
      tenants: [
        tenant("beta", {
          endpoints: [{ ...crm, retry: { max_attempts: 3, max_age: "24h" } }],
          routes: [route],
          bindings: [mail],
        }),
      ],
    };
    const [, endpoint] = plan(beta(), current, { prune: false });
    expect(endpoint).toEqual({
      op: "update",
      tenant: "beta",
      kind: "endpoints",
      name: "crm",
      fields: [{ path: "retry.max_attempts", from: 3, to: 8 }],
    });
  });

  test("a field in the database but not in the file is a change: the file is the whole truth for what it declares", () => {
    const current: DesiredState = {
      tenants: [tenant("beta", { endpoints: [{ ...crm, timeout: "10s" }], routes: [route], bindings: [mail] })],
    };
    const [, endpoint] = plan(beta(), current, { prune: false });
    expect(endpoint?.fields).toEqual([{ path: "timeout", from: "10s" }]);
  });

  test("without prune, what the file does not declare is left alone and not listed", () => {
    const current: DesiredState = {
      tenants: [
        tenant("beta", {
          endpoints: [crm, { name: "old", url: "http://10.0.0.9/" }],
          routes: [route],
          bindings: [mail],
        }),
        tenant("alpha"),
      ],
    };
    expect(ops(plan(beta(), current, { prune: false }))).toEqual([
      "unchanged tenants beta/beta",
      "unchanged endpoints beta/crm",
      "unchanged routes beta/hello-to-crm",
      "unchanged bindings beta/mail",
    ]);
  });

  test("with prune, it is deleted: bindings before routes before endpoints, tenants last", () => {
    const current: DesiredState = {
      tenants: [
        tenant("alpha", {
          endpoints: [crm],
          routes: [route],
          bindings: [mail],
          policies: [{ name: "p", rules: [] }],
          templates: [{ name: "t", instructions: "", model: { endpoint: "http://x/", default: "m" } }],
        }),
        tenant("beta", {
          endpoints: [crm, { name: "old", url: "http://10.0.0.9/" }],
          routes: [route],
          bindings: [mail],
        }),
      ],
    };
    expect(ops(plan(beta(), current, { prune: true }).filter((c) => c.op !== "unchanged"))).toEqual([
      "delete bindings alpha/mail",
      "delete routes alpha/hello-to-crm",
      "delete policies alpha/p",
      "delete templates alpha/t",
      "delete endpoints alpha/crm",
      "delete endpoints beta/old",
      "delete tenants alpha/alpha",
    ]);
  });

  test("creates and updates come before deletes, so a renamed endpoint exists before the old one goes", () => {
    const renamed: DesiredState = {
      tenants: [
        tenant("beta", {
          endpoints: [{ ...crm, name: "crm2" }],
          routes: [{ ...route, to: ["crm2"] }],
          bindings: [mail],
        }),
      ],
    };
    expect(ops(plan(renamed, beta(), { prune: true }).filter((c) => c.op !== "unchanged"))).toEqual([
      "create endpoints beta/crm2",
      "update routes beta/hello-to-crm",
      "delete endpoints beta/crm",
    ]);
  });

  test("tenant creates come before any resource; the order of the file or database does not matter", () => {
    const two: DesiredState = {
      tenants: [tenant("gamma", { endpoints: [crm] }), tenant("beta", { endpoints: [crm] })],
    };
    expect(ops(plan(two, empty, { prune: false }))).toEqual([
      "create tenants beta/beta",
      "create tenants gamma/gamma",
      "create endpoints beta/crm",
      "create endpoints gamma/crm",
    ]);
  });

  test("a tenant's own fields are compared; its resources are not part of it", () => {
    const named: DesiredState = {
      tenants: [{ ...beta().tenants[0]!, tenant: { name: "beta", display_name: "Beta Ltd" } }],
    };
    expect(plan(named, beta(), { prune: false })[0]).toEqual({
      op: "update",
      tenant: "beta",
      kind: "tenants",
      name: "beta",
      fields: [{ path: "display_name", to: "Beta Ltd" }],
    });
  });
});

describe("diffFields", () => {
  test("a list of names is one value: order matters, and the whole list is shown", () => {
    expect(diffFields({ to: ["crm"] }, { to: ["crm", "erp"] })).toEqual([
      { path: "to", from: ["crm"], to: ["crm", "erp"] },
    ]);
    expect(diffFields({ to: ["crm", "erp"] }, { to: ["erp", "crm"] })).toHaveLength(1);
  });

  test("lists of objects of the same length are compared item by item", () => {
    const from = {
      rules: [
        { when: { channel: "email" }, effect: "allow" },
        { when: { "auth.dmarc": "fail" }, effect: "quarantine" },
      ],
    };
    const to = {
      rules: [
        { effect: "allow", when: { channel: "email" } },
        { when: { "auth.dmarc": "fail" }, effect: "deny" },
      ],
    };
    expect(diffFields(from, to)).toEqual([{ path: "rules[1].effect", from: "quarantine", to: "deny" }]);
    expect(
      diffFields({ rules: [{ when: { "auth.dmarc": "fail" } }] }, { rules: [{ when: { "auth.dmarc": "pass" } }] }),
    ).toEqual([{ path: 'rules[0].when["auth.dmarc"]', from: "fail", to: "pass" }]);
  });

  test("an undefined field is an absent one", () => {
    expect(diffFields({ name: "a", timeout: undefined }, { name: "a" })).toEqual([]);
  });
});
