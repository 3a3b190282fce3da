import { describe, expect, test } from "bun:test";
import { validateSpec } from "../control/resources/validate.ts";
import { fieldsOf, formFromSpec, placeErrors, specFromForm } from "./config-form.ts";

describe("the configuration forms", () => {
  test("are generated from the schema: selects for enums, checkboxes, one-per-line lists, YAML for the rest", () => {
    const byName = new Map(fieldsOf("bindings", false).map((f) => [f.name, f]));
    expect(byName.get("type")).toMatchObject({
      input: "select",
      options: ["email", "webhook", "telnyx"],
      required: true,
    });
    expect(byName.get("addresses")?.input).toBe("lines");
    expect(byName.get("require_json")?.input).toBe("checkbox");
    expect(byName.get("max_body_bytes")?.input).toBe("number");
    // A nested optional object: its required field is not required of the form.
    expect(byName.get("verify.scheme")).toMatchObject({ input: "select", required: false });
    expect(byName.get("verify.secret")).toMatchObject({ input: "text", secret: true });
    expect(byName.get("verify.public_key")?.input).toBe("textarea");
    expect(fieldsOf("policies", false).find((f) => f.name === "rules")?.input).toBe("yaml");
    expect(fieldsOf("routes", true).map((f) => f.name)).not.toContain("name");
  });

  test("a stored spec shown in its form reads back as the same spec", () => {
    const specs = {
      endpoints: {
        name: "crm",
        url: "http://10.0.0.5/",
        retry: { max_attempts: 3, max_age: "1h" },
        allow_public: true,
      },
      bindings: { name: "mail", type: "email", addresses: ["hello", "support"] },
      routes: { name: "r", match: { channel: "email", "data.subject": { contains: "x" } }, to: ["crm"], priority: 5 },
      policies: { name: "p", default: "deny", rules: [{ name: "a", when: { agent: "hello" }, effect: "allow" }] },
    } as const;
    for (const [kind, spec] of Object.entries(specs) as [keyof typeof specs, Record<string, unknown>][]) {
      const form = formFromSpec(kind, spec, true);
      expect(specFromForm(kind, form, spec.name as string), kind).toEqual({ spec, local: [] });
    }
  });

  test("empty controls are absent fields; what is not a number is passed on for the validator to name", () => {
    const form = new URLSearchParams({
      url: " http://x/ ",
      "retry.max_attempts": "many",
      "retry.max_age": "",
      timeout: "",
    });
    const { spec } = specFromForm("endpoints", form, "crm");
    expect(spec).toEqual({ name: "crm", url: "http://x/", retry: { max_attempts: "many" } });
    expect(validateSpec("endpoints", spec)).toEqual([
      { pointer: "/retry/max_attempts", message: "must be a whole number" },
    ]);
  });

  test("YAML that does not parse is a problem of its own field", () => {
    const { local } = specFromForm("policies", new URLSearchParams({ rules: "- when: [" }), "p");
    expect(local).toHaveLength(1);
    expect(local[0]!.field).toBe("/rules");
  });

  test("errors land beside the deepest field their pointer names; the rest are the form's", () => {
    const defs = fieldsOf("policies", true);
    const { byField, general } = placeErrors(
      defs,
      [
        { field: "/rules/0/effect", message: "must be one of: allow, deny" },
        { field: "/default", message: "must be one of: allow, deny" },
        { field: "alpha/policies/p/rules/1/when/x", message: "bad" },
        { field: "/extra", message: "unknown field 'extra'" },
        { field: "/", message: "whole thing" },
      ],
      "alpha/policies/p",
    );
    expect(byField.get("rules")).toEqual(["rules[0].effect: must be one of: allow, deny", "rules[1].when.x: bad"]);
    expect(byField.get("default")).toEqual(["must be one of: allow, deny"]);
    expect(general).toEqual(["extra: unknown field 'extra'", "whole thing"]);
  });
});
