import { describe, expect, test } from "bun:test";
import { KindGuard, type TSchema } from "@sinclair/typebox";
import { KINDS, TenantSpec } from "./specs.ts";
import {
  checkGlobal,
  checkTenant,
  describeProblem,
  fieldPath,
  patternWords,
  pointerSegments,
  type TenantState,
  validateSpec,
  vaultRefs,
} from "./validate.ts";

/** A tenant with one of everything, all of it valid; tests break one thing at a time. */
function beta(overrides: Partial<TenantState> = {}): TenantState {
  return {
    tenant: { name: "beta" },
    endpoints: [{ name: "crm", url: "http://10.0.0.5:9000/hooks", signing_secret: "vault:beta/crm-signing" }],
    bindings: [
      { name: "mail", type: "email", addresses: ["hello", "support"] },
      { name: "github", type: "webhook", verify: { scheme: "github-hmac-sha256", secret: "vault:beta/github" } },
      {
        name: "sms",
        type: "telnyx",
        numbers: ["+15551234567"],
        verify: { scheme: "telnyx-ed25519", public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" },
      },
    ],
    routes: [{ name: "hello-to-crm", match: { channel: "email", agent: "hello" }, to: ["crm"] }],
    policies: [{ name: "guard", rules: [{ when: { channel: "email", "auth.dmarc": "fail" }, effect: "quarantine" }] }],
    templates: [
      {
        name: "helper",
        instructions: "Be brief.",
        model: { endpoint: "http://10.0.0.9:11434/v1", default: "llama3", api_key: "vault:beta/ollama" },
      },
    ],
    ...overrides,
  };
}

/** The messages of checkTenant, as "kind name pointer: message" lines. */
function tenantProblems(state: TenantState): string[] {
  return checkTenant(state).map((p) => `${p.kind} ${p.name} ${p.pointer}: ${p.message}`);
}

describe("validateSpec: every schema problem, in words", () => {
  test("a valid resource of every kind has no problems", () => {
    const state = beta();
    expect(validateSpec("tenants", state.tenant)).toEqual([]);
    for (const kind of ["endpoints", "bindings", "routes", "policies", "templates"] as const) {
      for (const r of state[kind]) expect(validateSpec(kind, r)).toEqual([]);
    }
  });

  test("reports every problem at once, each at its JSON pointer", () => {
    const problems = validateSpec("endpoints", {
      name: "Bad_Name",
      url: "ftp://x",
      retry: { max_attempts: 0, max_age: "1 day" },
    });
    expect(problems).toEqual([
      {
        pointer: "/name",
        message: "must be lower-case letters, digits and dashes (1-63 characters, no dash at either end)",
      },
      { pointer: "/url", message: "must be an http:// or https:// URL" },
      { pointer: "/retry/max_attempts", message: "must be at least 1" },
      { pointer: "/retry/max_age", message: "must be a duration such as 30s, 5m or 24h (units ms, s, m, h, d)" },
    ]);
  });

  test("an unknown field is named, with the field that was probably meant", () => {
    expect(validateSpec("endpoints", { name: "crm", url: "http://x", retyr: {} })).toEqual([
      { pointer: "/retyr", message: "unknown field 'retyr' (did you mean 'retry'?)", presence: "unknown" },
    ]);
    // No suggestion when nothing is close: a guess would mislead.
    expect(validateSpec("endpoints", { name: "crm", url: "http://x", colour: "red" })[0]?.message).toBe(
      "unknown field 'colour'",
    );
  });

  test("a missing field is reported once, as missing (not also as 'must be a string')", () => {
    expect(validateSpec("endpoints", {})).toEqual([
      { pointer: "/name", message: "missing required field 'name'", presence: "missing" },
      { pointer: "/url", message: "missing required field 'url'", presence: "missing" },
    ]);
  });

  test("a choice among literals is one line listing the choices", () => {
    expect(validateSpec("bindings", { name: "b", type: "emial", verify: { scheme: "hmac" } })).toEqual([
      { pointer: "/type", message: "must be one of: email, webhook, telnyx" },
      {
        pointer: "/verify/scheme",
        message: "must be one of: standard-webhooks, github-hmac-sha256, hmac-sha256, bearer, none, telnyx-ed25519",
      },
    ]);
  });

  test("a condition object is checked as an object: its unknown key is named, not 'expected union value'", () => {
    expect(
      validateSpec("routes", {
        name: "r",
        to: ["crm"],
        match: { channel: { eq: "email" }, agent: ["x"], "data.subject": {} },
      }),
    ).toEqual([
      { pointer: "/match/channel/eq", message: "unknown field 'eq'", presence: "unknown" },
      {
        pointer: "/match/agent",
        message: "must be a string, a number, a boolean or an object (equals, contains, in, matches)",
      },
      { pointer: "/match/data.subject", message: "must not be empty: give one of equals, contains, in, matches" },
    ]);
  });

  test("a match key must be an envelope field", () => {
    expect(validateSpec("policies", { name: "p", rules: [{ when: { Channel: "email" }, effect: "deny" }] })).toEqual([
      {
        pointer: "/rules/0/when/Channel",
        message: "'Channel' is not a valid key: must be an envelope field such as channel, agent or data.subject",
        presence: "unknown",
      },
    ]);
  });

  test("a number where text is expected says to quote it (YAML reads +15551234567 as a number)", () => {
    expect(validateSpec("bindings", { name: "sms", type: "telnyx", numbers: [15551234567] })).toEqual([
      { pointer: "/numbers/0", message: "must be a string (put it in quotes)" },
    ]);
  });

  test("lists, booleans, integers, lengths and repeats", () => {
    expect(validateSpec("routes", { name: "r", to: [], default: "yes", priority: 1.5 })).toEqual([
      { pointer: "/to", message: "must list at least one item" },
      { pointer: "/priority", message: "must be a whole number" },
      { pointer: "/default", message: "must be true or false" },
    ]);
    expect(validateSpec("bindings", { name: "m", type: "email", addresses: ["hello", "hello"] })).toEqual([
      { pointer: "/addresses", message: 'lists "hello" more than once' },
    ]);
    expect(validateSpec("tenants", { name: "beta", display_name: "x".repeat(201) })).toEqual([
      { pointer: "/display_name", message: "must be at most 200 characters" },
    ]);
    expect(validateSpec("routes", "hello-to-crm")).toEqual([
      { pointer: "", message: "must be an object (name, match, to, priority, default)" },
    ]);
  });

  test("every pattern in specs.ts has words, so no message ever shows a regex", () => {
    const patterns: string[] = [];
    const walk = (s: TSchema): void => {
      if (typeof s.pattern === "string") patterns.push(s.pattern);
      // "^(.*)$" is TypeBox's key pattern for "any string": it never fails, so needs no words.
      if (KindGuard.IsRecord(s)) patterns.push(...Object.keys(s.patternProperties).filter((k) => k !== "^(.*)$"));
      for (const child of [
        ...Object.values(s.properties ?? {}),
        ...Object.values(s.patternProperties ?? {}),
        ...(s.anyOf ?? []),
        ...(s.items ? [s.items] : []),
      ]) {
        walk(child as TSchema);
      }
    };
    for (const schema of [TenantSpec, ...Object.values(KINDS)]) walk(schema);
    expect(patterns.length).toBeGreaterThan(5);
    for (const p of patterns) expect(patternWords(p)).not.toContain(p);
  });
});

describe("paths for people", () => {
  test("pointers become dotted paths; indexes and dotted keys stay unambiguous", () => {
    expect(fieldPath(pointerSegments("/retry/max_attempts"))).toBe("retry.max_attempts");
    expect(fieldPath(pointerSegments("/to/1"))).toBe("to[1]");
    expect(fieldPath(pointerSegments("/rules/0/when/auth.dmarc"))).toBe('rules[0].when["auth.dmarc"]');
    expect(pointerSegments("/a~1b/c~0d")).toEqual(["a/b", "c~d"]);
  });

  test("a problem reads as one phrase", () => {
    expect(describeProblem({ pointer: "/retry/max_attempts", message: "must be at least 1" })).toBe(
      "retry.max_attempts must be at least 1",
    );
    expect(describeProblem({ pointer: "/retry/foo", message: "unknown field 'foo'", presence: "unknown" })).toBe(
      "retry: unknown field 'foo'",
    );
    expect(describeProblem({ pointer: "/url", message: "missing required field 'url'", presence: "missing" })).toBe(
      "missing required field 'url'",
    );
  });
});

describe("checkTenant: the rules between resources", () => {
  test("the reference tenant has no problems", () => {
    expect(checkTenant(beta())).toEqual([]);
  });

  test("a route delivers only to endpoints of its own tenant", () => {
    const state = beta({ routes: [{ name: "r", to: ["crm", "erp"] }] });
    expect(checkTenant(state)).toEqual([
      { kind: "routes", name: "r", index: 0, pointer: "/to/1", message: "no endpoint 'erp' in tenant beta" },
    ]);
  });

  test("a route may name a claimed agent (agent:<name>), which the schema accepts and no endpoint needs to back", () => {
    const state = beta({ routes: [{ name: "r", to: ["crm", "agent:hello"] }] });
    expect(checkTenant(state)).toEqual([]);
    expect(validateSpec("routes", { name: "r", to: ["agent:hello"] })).toEqual([]);
    expect(validateSpec("routes", { name: "r", to: ["agent:Hello"] })[0]?.message).toContain("agent:<name>");
  });

  test("at most one route is the default", () => {
    const state = beta({
      routes: [
        { name: "a", to: ["crm"], default: true },
        { name: "b", to: ["crm"], default: false },
        { name: "c", to: ["crm"], default: true },
      ],
    });
    expect(tenantProblems(state)).toEqual([
      "routes c /default: only one route can be the default, and route 'a' already is",
    ]);
  });

  test("names are unique within a kind; the second one is reported", () => {
    const state = beta({ endpoints: [...beta().endpoints, { name: "crm", url: "http://10.0.0.6/" }] });
    expect(checkTenant(state)).toEqual([
      {
        kind: "endpoints",
        name: "crm",
        index: 1,
        pointer: "/name",
        message: "endpoint 'crm' is declared twice in tenant beta",
      },
    ]);
  });

  test("a vault reference to another tenant's secret is an isolation error, wherever it is", () => {
    const state = beta({
      endpoints: [{ name: "crm", url: "http://10.0.0.5/", signing_secret: "vault:alpha/crm" }],
      bindings: [{ name: "gh", type: "webhook", verify: { scheme: "standard-webhooks", secret: "vault:alpha/gh" } }],
      templates: [
        {
          name: "t",
          instructions: "",
          model: { endpoint: "http://10.0.0.9/v1", default: "m", api_key: "vault:alpha/key" },
        },
      ],
    });
    expect(tenantProblems(state)).toEqual([
      "endpoints crm /signing_secret: vault:alpha/crm is a secret of tenant alpha; tenant beta can only use its own (vault:beta/…)",
      "bindings gh /verify/secret: vault:alpha/gh is a secret of tenant alpha; tenant beta can only use its own (vault:beta/…)",
      "templates t /model/api_key: vault:alpha/key is a secret of tenant alpha; tenant beta can only use its own (vault:beta/…)",
    ]);
  });

  test("an email binding needs addresses and takes no numbers or verify", () => {
    expect(
      tenantProblems(
        beta({ bindings: [{ name: "m", type: "email", numbers: ["+15551234567"], verify: { scheme: "none" } }] }),
      ),
    ).toEqual([
      "bindings m /numbers: only telnyx bindings take numbers",
      "bindings m : an email binding needs addresses: the agents it takes mail for, e.g. [hello]",
      "bindings m /verify: email is checked with SPF, DKIM and DMARC; verify is for webhook and telnyx bindings",
    ]);
  });

  test("a telnyx binding needs numbers and telnyx-ed25519 with a public key", () => {
    expect(tenantProblems(beta({ bindings: [{ name: "s", type: "telnyx", addresses: ["hello"] }] }))).toEqual([
      "bindings s /addresses: only email bindings take addresses",
      'bindings s : a telnyx binding needs numbers, e.g. ["+15551234567"]',
      "bindings s : a telnyx binding needs verify: { scheme: telnyx-ed25519, public_key: … }",
    ]);
    expect(
      tenantProblems(
        beta({
          bindings: [{ name: "s", type: "telnyx", numbers: ["+15551234567"], verify: { scheme: "telnyx-ed25519" } }],
        }),
      ),
    ).toEqual(["bindings s /verify: scheme telnyx-ed25519 needs public_key: the Telnyx account's public key"]);
    expect(
      tenantProblems(
        beta({
          bindings: [
            {
              name: "s",
              type: "telnyx",
              numbers: ["+15551234567"],
              verify: { scheme: "bearer", secret: "vault:beta/t" },
            },
          ],
        }),
      ),
    ).toEqual(["bindings s /verify/scheme: a telnyx binding is verified with scheme telnyx-ed25519"]);
  });

  test("a webhook binding must say how it is verified; 'none' only when written", () => {
    expect(tenantProblems(beta({ bindings: [{ name: "w", type: "webhook" }] }))).toEqual([
      "bindings w : a webhook binding needs verify (write verify: { scheme: none } to accept unsigned requests)",
    ]);
    expect(checkTenant(beta({ bindings: [{ name: "w", type: "webhook", verify: { scheme: "none" } }] }))).toEqual([]);
  });

  test("each verify scheme gets the fields it uses and no others", () => {
    const hook = (verify: NonNullable<TenantState["bindings"][number]["verify"]>) =>
      tenantProblems(beta({ bindings: [{ name: "w", type: "webhook", verify }] }));
    for (const scheme of ["standard-webhooks", "github-hmac-sha256", "bearer"] as const) {
      expect(hook({ scheme })).toEqual([`bindings w /verify: scheme ${scheme} needs secret (a vault reference)`]);
    }
    expect(hook({ scheme: "hmac-sha256" })).toEqual([
      "bindings w /verify: scheme hmac-sha256 needs secret (a vault reference)",
      "bindings w /verify: scheme hmac-sha256 needs header: the request header that carries the signature",
    ]);
    expect(hook({ scheme: "hmac-sha256", secret: "vault:beta/s", header: "X-Signature", encoding: "hex" })).toEqual([]);
    expect(hook({ scheme: "bearer", secret: "vault:beta/s", header: "X-Token" })).toEqual([]);
    expect(hook({ scheme: "none", secret: "vault:beta/s", header: "X-Sig", encoding: "hex", public_key: "k" })).toEqual(
      [
        "bindings w /verify/secret: scheme none takes no secret",
        "bindings w /verify/header: only schemes hmac-sha256 and bearer take a header",
        "bindings w /verify/encoding: only scheme hmac-sha256 takes an encoding",
        "bindings w /verify/public_key: only scheme telnyx-ed25519 takes a public_key",
      ],
    );
    expect(hook({ scheme: "telnyx-ed25519", public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" })).toEqual([
      "bindings w /verify/scheme: scheme telnyx-ed25519 is for telnyx bindings",
    ]);
  });

  test("an email address belongs to one binding of the tenant", () => {
    const state = beta({
      bindings: [
        { name: "mail", type: "email", addresses: ["hello", "support"] },
        { name: "more", type: "email", addresses: ["sales", "support"] },
      ],
    });
    expect(tenantProblems(state)).toEqual([
      "bindings more /addresses/1: address 'support' already belongs to binding 'mail'; it can belong to one binding only",
    ]);
  });

  test("a telnyx number belongs to one binding of the tenant", () => {
    const sms = (name: string) => ({
      name,
      type: "telnyx" as const,
      numbers: ["+15551234567"],
      verify: { scheme: "telnyx-ed25519" as const, public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" },
    });
    expect(tenantProblems(beta({ bindings: [sms("a"), sms("b")] }))).toEqual([
      "bindings b /numbers/0: number '+15551234567' already belongs to binding 'a'; it can belong to one binding only",
    ]);
  });

  test("a 'matches' condition must be a regular expression that compiles", () => {
    const state = beta({
      routes: [{ name: "r", to: ["crm"], match: { "data.subject": { matches: "([a-z" } } }],
      policies: [
        {
          name: "p",
          rules: [
            { when: { "data.subject": { matches: "^ok$" } }, effect: "allow" },
            { when: { agent: { matches: "*" } }, effect: "deny" },
          ],
        },
      ],
    });
    const problems = checkTenant(state);
    expect(problems.map((p) => `${p.kind} ${p.pointer}`)).toEqual([
      "routes /match/data.subject/matches",
      "policies /rules/1/when/agent/matches",
    ]);
    expect(problems[0]?.message).toStartWith("is not a valid regular expression");
  });

  test("a tool is listed once per template", () => {
    const tool = { id: "email.send", provisioning: "pool" as const };
    const state = beta({
      templates: [
        { name: "t", instructions: "", model: { endpoint: "http://10.0.0.9/v1", default: "m" }, tools: [tool, tool] },
      ],
    });
    expect(tenantProblems(state)).toEqual(["templates t /tools/1/id: tool 'email.send' is listed twice"]);
  });
});

describe("checkGlobal: the rules across tenants", () => {
  const alpha = (numbers: string[]): TenantState => ({
    ...beta({
      bindings: [
        {
          name: "phone",
          type: "telnyx",
          numbers,
          verify: { scheme: "telnyx-ed25519", public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" },
        },
      ],
    }),
    tenant: { name: "alpha" },
  });

  test("a telnyx number resolves exactly one tenant", () => {
    expect(checkGlobal([alpha(["+15551234567"]), beta()])).toEqual([
      {
        tenant: "beta",
        tenantIndex: 1,
        kind: "bindings",
        name: "sms",
        index: 2,
        pointer: "/numbers/0",
        message:
          "number +15551234567 already belongs to tenant alpha (binding 'phone'); a number can route to one tenant only",
        other: { tenant: "alpha", binding: "phone", pointer: "/numbers/0", value: "+15551234567" },
      },
    ]);
    expect(checkGlobal([alpha(["+15550000000"]), beta()])).toEqual([]);
  });

  test("a number repeated inside one tenant is left to checkTenant (reported once, not twice)", () => {
    const twice = beta({
      bindings: [
        ...beta().bindings,
        {
          name: "sms2",
          type: "telnyx",
          numbers: ["+15551234567"],
          verify: { scheme: "telnyx-ed25519", public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" },
        },
      ],
    });
    expect(checkGlobal([twice])).toEqual([]);
    expect(checkTenant(twice)).toHaveLength(1);
  });

  test("tenant names are unique", () => {
    expect(checkGlobal([beta(), beta({ bindings: [] })])).toEqual([
      {
        tenant: "beta",
        tenantIndex: 1,
        kind: "tenants",
        name: "beta",
        index: 1,
        pointer: "/name",
        message: "tenant 'beta' is declared twice",
      },
    ]);
  });
});

describe("vaultRefs", () => {
  test("lists every secret a tenant refers to, once, sorted", () => {
    const state = beta({
      endpoints: [
        ...beta().endpoints,
        { name: "erp", url: "http://10.0.0.7/", signing_secret: "vault:beta/crm-signing" },
      ],
    });
    expect(vaultRefs(state)).toEqual(["vault:beta/crm-signing", "vault:beta/github", "vault:beta/ollama"]);
    expect(vaultRefs(beta({ endpoints: [], bindings: [], templates: [] }))).toEqual([]);
  });
});
