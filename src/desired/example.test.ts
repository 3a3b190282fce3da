import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { formatProblem, parseDesired } from "./parse.ts";
import { plan } from "./plan.ts";
import { renderPlan } from "./render.ts";

/** examples/agentowl.yaml is SPEC §6's file as written; SPEC: "a file like the one above must apply as written". */
const FILE = "examples/agentowl.yaml";
const text = readFileSync(new URL(`../../${FILE}`, import.meta.url), "utf8");

function example() {
  const result = parseDesired(text, FILE);
  if ("errors" in result) throw new Error(result.errors.map(formatProblem).join("\n"));
  return result.state;
}

describe("the shipped example", () => {
  // The specification sits beside the repository in the workspace, not in a clone of it.
  const spec = new URL("../../../shared/SPEC.md", import.meta.url);
  test.if(existsSync(spec))("is SPEC §6's example, word for word", () => {
    expect(readFileSync(spec, "utf8")).toContain(`\`\`\`yaml\n${text}\`\`\``);
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
