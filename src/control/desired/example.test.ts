import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { formatProblem, parseDesired } from "./parse.ts";
import { plan } from "./plan.ts";
import { renderPlan } from "./render.ts";

/** examples/agentowl.yaml is docs/desired-state.md's file as written, and a file like it must apply as written. */
const FILE = "examples/agentowl.yaml";
const text = readFileSync(new URL(`../../../${FILE}`, import.meta.url), "utf8");

function example() {
  const result = parseDesired(text, FILE);
  if ("errors" in result) throw new Error(result.errors.map(formatProblem).join("\n"));
  return result.state;
}

/**
 * docs/desired-state.md's example as the specification writes it, but for two lines (docs/desired-state.md says
 * why): the endpoint posts to 127.0.0.1, not to 10.0.0.5 (whoever has that address on an office
 * LAN would receive the mail), and the Telnyx key is a real Ed25519 key (`"..."` fails validation).
 * Comments are the file's own.
 */
const asSpecWritesIt = (yaml: string) =>
  yaml
    .split("\n")
    .filter((line) => !/^\s*#/.test(line))
    .join("\n")
    .replace("url: http://127.0.0.1:9000/hooks/agentowl", "url: http://10.0.0.5:9000/hooks/agentowl")
    .replace(/public_key: "[A-Za-z0-9+/=]{44}"/, 'public_key: "..."');

describe("the shipped example", () => {
  // The specification sits beside the repository in the workspace, not in a clone of it.
  const spec = new URL("../../../../shared/SPEC.md", import.meta.url);
  test.if(existsSync(spec))(
    "is the specification's desired-state example but for its endpoint address (loopback) and a Telnyx key that parses",
    () => {
      expect(readFileSync(spec, "utf8")).toContain(`\`\`\`yaml\n${asSpecWritesIt(text)}\`\`\``);
    },
  );

  test("sends nothing across the LAN: its endpoints are on loopback", () => {
    expect(example().tenants.flatMap((t) => t.endpoints.map((e) => new URL(e.url).hostname))).toEqual(["127.0.0.1"]);
  });

  test("the specification's placeholder key is refused, with its place in the file", () => {
    const placeholder = text.replace(/public_key: "[A-Za-z0-9+/=]{44}"/, 'public_key: "..."');
    const result = parseDesired(placeholder, FILE);
    expect("errors" in result && result.errors.map(formatProblem)).toEqual([
      expect.stringMatching(
        /^examples\/agentowl\.yaml:15:\d+: binding beta\/sms: verify\.public_key is not an Ed25519 public key/,
      ),
    ]);
  });

  test("parses with no problems", () => {
    expect(parseDesired(text, FILE)).not.toHaveProperty("errors");
    expect(example().tenants.map((t) => t.tenant.name)).toEqual(["beta"]);
  });

  test("on an empty appliance, everything is created", () => {
    const changes = plan(example(), { tenants: [] }, { prune: false });
    expect(changes.map((c) => c.op)).toEqual(Array(7).fill("create"));
    expect(renderPlan(changes)).toBe(
      [
        "+ create tenant beta",
        "+ create endpoint beta/crm",
        "+ create policy beta/guard",
        "+ create route beta/hello-to-crm",
        "+ create binding beta/github",
        "+ create binding beta/mail",
        "+ create binding beta/sms",
        "7 created, 0 updated, 0 unchanged, 0 deleted",
        "",
      ].join("\n"),
    );
  });

  test("applied a second time, nothing changes", () => {
    const changes = plan(example(), example(), { prune: true });
    expect(changes.map((c) => c.op)).toEqual(Array(7).fill("unchanged"));
  });
});
