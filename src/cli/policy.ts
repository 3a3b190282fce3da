import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { EXIT, UsageError } from "./exit-codes.ts";
import { readResourceFile } from "./input.ts";
import { cell, renderTable, toJson } from "./output.ts";

interface TestAnswer {
  event: string;
  policies: { name: string; version: number; draft: boolean }[];
  decisions: { action: { target: string }; effect: string; policy: { name: string; version: number } | null; rule: number | null; reason: string | null }[];
}

/** `agentowl policy test`: what the policies would decide for a stored event, a draft included. */
const testCommand: Command = {
  name: ["policy", "test"],
  summary: "show what the policies (or a draft) would decide for a stored event",
  help: `Usage: agentowl policy test -t TENANT --event EVT_ID [--policy FILE] [--target NAME ...] [--json]

Evaluates the tenant's policies for a stored event's dispatch to each of its endpoints (or to the
--target endpoints): the effect (allow, deny, require_approval, quarantine), the policy and
version that decided, and the rule that matched (- for the policy's default). With --policy, the
draft in FILE (YAML or JSON) takes the place of the stored policy of the same name, shown as
version 0 (draft). Nothing is stored or applied. Needs write access to the tenant.

${CONNECTION_HELP}

${API_EXIT_HELP}`,
  options: { tenant: { type: "string", short: "t" }, event: { type: "string" }, policy: { type: "string" }, target: { type: "string", multiple: true }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const tenant = stringOpt(values, "tenant");
    const event = stringOpt(values, "event");
    if (!tenant) throw new UsageError("missing -t TENANT");
    if (!event) throw new UsageError("missing --event EVT_ID");
    const policyFile = stringOpt(values, "policy");
    const draft = policyFile ? await readResourceFile(io, policyFile) : undefined;
    const targets = values.target as string[] | undefined;
    const answer = await clientFor(values, io.env).call<TestAnswer>("POST", `${apiPath("tenants", tenant)}/policy-test`, { json: { event, policy: draft, targets } });
    const r = answer.body;
    if (values.json) {
      io.out(toJson(r));
      return EXIT.ok;
    }
    const versions = r.policies.map((p) => `${p.name}@${p.draft ? "draft" : p.version}`).join(", ") || "none";
    io.out(`event ${r.event}; policies: ${versions}\n`);
    io.out(
      renderTable(
        ["TARGET", "EFFECT", "POLICY", "RULE", "REASON"],
        r.decisions.map((d) => [cell(d.action.target), cell(d.effect), d.policy ? `${d.policy.name}@${d.policy.version === 0 ? "draft" : d.policy.version}` : "-", d.rule === null ? "-" : String(d.rule), cell(d.reason ?? "-")]),
      ),
    );
    return EXIT.ok;
  },
};

export const POLICY_COMMANDS: readonly Command[] = [testCommand];
