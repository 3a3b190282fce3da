import { METADATA_FIELDS } from "../control/service.ts";
import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { EXIT, UsageError } from "./exit-codes.ts";
import { readResourceFile } from "./input.ts";
import { cell, renderTable, toJson } from "./output.ts";

interface TestAnswer {
  event: string;
  policies: { name: string; global: boolean; version: number; draft: boolean }[];
  decisions: { action: { target: string }; effect: string; policy: { name: string; global: boolean; version: number } | null; rule: number | null; reason: string | null }[];
}

/** `agentowl policy test`: what the policies would decide for a stored event, a draft included. */
const testCommand: Command = {
  name: ["policy", "test"],
  summary: "show what the policies (or a draft) would decide for a stored event",
  help: `Usage: agentowl policy test -t TENANT --event EVT_ID [--policy FILE [--global]] [--target NAME ...] [--json]

Evaluates the global policies and the tenant's own for a stored event's dispatch to each of its endpoints (or to the
--target endpoints): the effect (allow, deny, require_approval, quarantine), the policy and
version that decided, and the rule that matched (- for the policy's default). With --policy, the
draft in FILE (YAML or JSON) takes the place of the stored policy of the same name, shown as
version 0 (draft); with --global the draft is a global policy (admin only). Global policies are
shown as global:NAME. Nothing is stored or applied. Needs write access to the tenant.

${CONNECTION_HELP}

${API_EXIT_HELP}`,
  options: { tenant: { type: "string", short: "t" }, event: { type: "string" }, policy: { type: "string" }, global: { type: "boolean" }, target: { type: "string", multiple: true }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const tenant = stringOpt(values, "tenant");
    const event = stringOpt(values, "event");
    if (!tenant) throw new UsageError("missing -t TENANT");
    if (!event) throw new UsageError("missing --event EVT_ID");
    const policyFile = stringOpt(values, "policy");
    if (values.global && !policyFile) throw new UsageError("--global describes the draft of --policy FILE");
    const draft = policyFile ? await readResourceFile(io, policyFile) : undefined;
    if (draft) for (const f of METADATA_FIELDS) delete draft[f];
    const targets = values.target as string[] | undefined;
    const answer = await clientFor(values, io.env).call<TestAnswer>("POST", `${apiPath("tenants", tenant)}/policy-test`, { json: { event, policy: draft, global: values.global === true, targets } });
    const r = answer.body;
    if (values.json) {
      io.out(toJson(r));
      return EXIT.ok;
    }
    const named = (p: { name: string; global: boolean }) => (p.global ? `global:${p.name}` : p.name);
    const versions = r.policies.map((p) => `${named(p)}@${p.draft ? "draft" : p.version}`).join(", ") || "none";
    io.out(`event ${r.event}; policies: ${versions}\n`);
    io.out(
      renderTable(
        ["TARGET", "EFFECT", "POLICY", "RULE", "REASON"],
        r.decisions.map((d) => [cell(d.action.target), cell(d.effect), d.policy ? `${named(d.policy)}@${d.policy.version === 0 ? "draft" : d.policy.version}` : "-", d.rule === null ? "-" : String(d.rule), cell(d.reason ?? "-")]),
      ),
    );
    return EXIT.ok;
  },
};

export const POLICY_COMMANDS: readonly Command[] = [testCommand];
