import { describe, expect, test } from "bun:test";
import { formatProblem, MAX_ALIAS_COUNT, parseDesired } from "./parse.ts";

/** The problems in `yaml`, formatted as the CLI prints them. */
function problems(yaml: string): string[] {
  const result = parseDesired(yaml, "f.yaml");
  if ("state" in result) throw new Error("expected problems, the file parsed");
  return result.errors.map(formatProblem);
}

function parsed(yaml: string) {
  const result = parseDesired(yaml, "f.yaml");
  if ("errors" in result) throw new Error(result.errors.map(formatProblem).join("\n"));
  return result.state;
}

/** The smallest valid file, with `body` spliced in under tenant beta. */
const beta = (body = "") => `apiVersion: agentowl/v1\ntenants:\n  - name: beta\n${body}`;

describe("a valid file", () => {
  test("becomes one TenantState per tenant, every kind present", () => {
    const state = parsed(
      beta("    display_name: Beta Ltd\n    endpoints:\n      - { name: crm, url: http://10.0.0.5/ }\n"),
    );
    expect(state).toEqual({
      tenants: [
        {
          tenant: { name: "beta", display_name: "Beta Ltd" },
          endpoints: [{ name: "crm", url: "http://10.0.0.5/" }],
          bindings: [],
          routes: [],
          policies: [],
          templates: [],
        },
      ],
    });
  });

  test("a file with no tenants is valid (and with --prune, deletes everything)", () => {
    expect(parsed("apiVersion: agentowl/v1\ntenants: []\n")).toEqual({ tenants: [] });
  });

  test("anchors and aliases may share a block", () => {
    const state = parsed(
      beta(
        "    endpoints:\n      - { name: a, url: http://10.0.0.5/, retry: &r { max_attempts: 3 } }\n      - { name: b, url: http://10.0.0.6/, retry: *r }\n",
      ),
    );
    expect(state.tenants[0]?.endpoints[1]?.retry).toEqual({ max_attempts: 3 });
  });
});

describe("YAML syntax", () => {
  test("a syntax error is reported where it is, and nothing else is checked", () => {
    expect(problems("apiVersion: agentowl/v1\ntenants: [\n  - x\n")[0]).toStartWith("f.yaml:3:3: ");
  });

  test("a duplicate key is an error, not 'the last one wins'", () => {
    expect(problems(beta("    endpoints: []\n    endpoints: []\n"))).toEqual([
      "f.yaml:5:5: duplicate key 'endpoints': a key may appear once per mapping",
    ]);
    expect(problems(beta("    endpoints:\n      - { name: a, url: http://x/, name: b }\n"))).toEqual([
      "f.yaml:5:36: duplicate key 'name': a key may appear once per mapping",
    ]);
  });

  test("one document per file", () => {
    expect(problems("apiVersion: agentowl/v1\ntenants: []\n---\napiVersion: agentowl/v1\n")[0]).toStartWith(
      "f.yaml:3:1: ",
    );
  });

  test("an alias without its anchor", () => {
    expect(problems(beta("    endpoints: *eps\n"))).toEqual([
      "f.yaml:4:16: unknown alias *eps: its anchor &eps must come before it",
    ]);
  });

  test("an alias bomb is refused before it expands", () => {
    const levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (const name of "bcdefgh")
      levels.push(
        `${name}: &${name} [${Array(10)
          .fill(`*${levels.length ? String.fromCharCode(name.charCodeAt(0) - 1) : "a"}`)
          .join(", ")}]`,
      );
    expect(problems(`${levels.join("\n")}\n`)).toEqual([
      `f.yaml:2:8: aliases expand too much (more than ${MAX_ALIAS_COUNT} uses of an anchor); write the values out`,
    ]);
  });

  test("an empty file, or one that is not a mapping", () => {
    expect(problems("")).toEqual(["f.yaml:1:1: expected a mapping with apiVersion: agentowl/v1 and tenants"]);
    expect(problems("- beta\n")).toEqual(["f.yaml:1:1: expected a mapping with apiVersion: agentowl/v1 and tenants"]);
  });
});

describe("the file's own fields", () => {
  test("a wrong apiVersion points at its value; an unknown top-level key at the key", () => {
    expect(problems("apiVersion: agentowl/v2\ntenant: []\n")).toEqual([
      "f.yaml:1:1: missing required field 'tenants'",
      "f.yaml:1:13: apiVersion must be agentowl/v1",
      "f.yaml:2:1: unknown field 'tenant' (did you mean 'tenants'?)",
    ]);
  });

  test("a missing apiVersion is reported at the mapping that lacks it", () => {
    expect(problems("tenants: []\n")).toEqual(["f.yaml:1:1: missing required field 'apiVersion'"]);
  });
});

describe("schema problems, at the offending node, named by resource", () => {
  test("a wrong value points at the value", () => {
    expect(
      problems(
        beta("    endpoints:\n      - name: crm\n        url: ftp://10.0.0.5/\n        retry: { max_attempts: 0 }\n"),
      ),
    ).toEqual([
      "f.yaml:6:14: endpoint beta/crm: url must be an http:// or https:// URL",
      "f.yaml:7:32: endpoint beta/crm: retry.max_attempts must be at least 1",
    ]);
  });

  test("an unknown field points at its key, with a suggestion; a missing one at the item", () => {
    expect(problems(beta("    endpoints:\n      - name: crm\n        retyr: { max_attempts: 3 }\n"))).toEqual([
      "f.yaml:5:9: endpoint beta/crm: missing required field 'url'",
      "f.yaml:6:9: endpoint beta/crm: unknown field 'retyr' (did you mean 'retry'?)",
    ]);
  });

  test("a nested unknown field names its parent", () => {
    expect(
      problems(
        beta("    endpoints:\n      - { name: crm, url: http://x/, retry: { max_attempts: 3, backoff: 2s } }\n"),
      ),
    ).toEqual(["f.yaml:5:64: endpoint beta/crm: retry: unknown field 'backoff'"]);
  });

  test("a tenant field, a resource without a usable name, and a kind that is not a list", () => {
    expect(
      problems(beta("    endpoint: []\n    bindings:\n      - { type: email, addresses: [hello] }\n    routes: {}\n")),
    ).toEqual([
      "f.yaml:4:5: tenant beta: unknown field 'endpoint' (did you mean 'endpoints'?)",
      "f.yaml:6:9: binding #1 of tenant beta: missing required field 'name'",
      "f.yaml:7:13: tenant beta: routes must be a list",
    ]);
  });

  test("a one-of field lists the choices; an unquoted phone number is told to quote", () => {
    expect(problems(beta("    bindings:\n      - { name: sms, type: sms, numbers: [+15551234567] }\n"))).toEqual([
      "f.yaml:5:28: binding beta/sms: type must be one of: email, webhook, telnyx",
      "f.yaml:5:43: binding beta/sms: numbers[0] must be a string (put it in quotes)",
    ]);
  });

  test("an empty value is said to be empty", () => {
    expect(problems(beta("    endpoints:\n      - name: crm\n        url:\n"))).toEqual([
      "f.yaml:6:13: endpoint beta/crm: url must be a string (it is empty)",
    ]);
  });

  test("conditions: a bad envelope field and an unknown condition key", () => {
    expect(
      problems(
        beta(
          "    policies:\n      - name: guard\n        rules:\n          - { when: { Channel: email, agent: { eq: x } }, effect: deny }\n",
        ),
      ),
    ).toEqual([
      "f.yaml:7:23: policy beta/guard: rules[0].when: 'Channel' is not a valid key: must be an envelope field such as channel, agent or data.subject",
      "f.yaml:7:48: policy beta/guard: rules[0].when.agent: unknown field 'eq'",
    ]);
  });
});

describe("rules between resources, at the offending node", () => {
  const file = `apiVersion: agentowl/v1
tenants:
  - name: beta
    endpoints:
      - { name: crm, url: "http://10.0.0.5/", signing_secret: vault:alpha/crm }
      - { name: crm, url: "http://10.0.0.6/" }
    bindings:
      - { name: mail, type: email }
      - { name: hook, type: webhook }
      - { name: sms, type: telnyx, numbers: ["+15551234567"], verify: { scheme: telnyx-ed25519 } }
      - { name: more, type: email, addresses: [hello, hello2] }
      - { name: most, type: email, addresses: [hello] }
    routes:
      - { name: r1, to: [crm, erp], default: true }
      - { name: r2, to: [crm], default: true }
  - name: alpha
    bindings:
      - { name: sms, type: telnyx, numbers: ["+15551234567"], verify: { scheme: telnyx-ed25519, public_key: "TsFuCrn9y7KS2micIi9ZRY8soBn7HMBrSEdQIHQ5wsI=" } }
  - name: beta
`;

  test("every rule broken is reported, each at its line and column", () => {
    expect(problems(file)).toEqual([
      "f.yaml:5:63: endpoint beta/crm: vault:alpha/crm is a secret of tenant alpha; tenant beta can only use its own (vault:beta/…)",
      "f.yaml:6:17: endpoint beta/crm: endpoint 'crm' is declared twice in tenant beta",
      "f.yaml:8:9: binding beta/mail: an email binding needs addresses: the agents it takes mail for, e.g. [hello]",
      "f.yaml:9:9: binding beta/hook: a webhook binding needs verify (write verify: { scheme: none } to accept unsigned requests)",
      "f.yaml:10:71: binding beta/sms: scheme telnyx-ed25519 needs public_key: the Telnyx account's public key",
      "f.yaml:12:48: binding beta/most: address 'hello' already belongs to binding 'more'; it can belong to one binding only",
      "f.yaml:14:31: route beta/r1: no endpoint 'erp' in tenant beta",
      "f.yaml:15:41: route beta/r2: only one route can be the default, and route 'r1' already is",
      "f.yaml:18:46: binding alpha/sms: number +15551234567 already belongs to tenant beta (binding 'sms'); a number can route to one tenant only",
      "f.yaml:19:11: tenant beta: tenant 'beta' is declared twice",
    ]);
  });

  test("a tenant with schema problems is checked for those first, so a typo is not also a dozen broken references", () => {
    const yaml = beta(
      "    endpoints:\n      - { name: crm, url: ftp://x }\n    routes:\n      - { name: r, to: [crm] }\n",
    );
    expect(problems(yaml)).toEqual(["f.yaml:5:27: endpoint beta/crm: url must be an http:// or https:// URL"]);
  });
});

describe("silent traps are errors at their place in the file", () => {
  test("a misspelt condition field, which would never match, and a Telnyx key that does not parse", () => {
    const file = `apiVersion: agentowl/v1
tenants:
  - name: beta
    endpoints:
      - { name: crm, url: "http://127.0.0.1:9000/" }
    bindings:
      - { name: sms, type: telnyx, numbers: ["+15551234567"], verify: { scheme: telnyx-ed25519, public_key: "..." } }
    routes:
      - { name: r, match: { chanel: email }, to: [crm] }
    policies:
      - name: guard
        rules:
          - { when: { chanel: email, auth.dmrac: fail }, effect: quarantine }
          - { when: { target: crm, data.subjct: { contains: refund } }, effect: require_approval }
`;
    expect(problems(file)).toEqual([
      "f.yaml:7:109: binding beta/sms: verify.public_key is not an Ed25519 public key: give the " +
        "base64 of its 32 bytes (as the Telnyx portal shows it), or a PEM or base64 DER SubjectPublicKeyInfo",
      "f.yaml:9:37: route beta/r: no event field 'chanel': did you mean 'channel'?",
      "f.yaml:13:31: policy beta/guard: no event field 'chanel': did you mean 'channel'?",
      "f.yaml:13:50: policy beta/guard: auth has no field 'dmrac': did you mean 'auth.dmarc'?",
      "f.yaml:14:49: policy beta/guard: data has no field 'subjct': did you mean 'data.subject'?",
    ]);
  });
});
