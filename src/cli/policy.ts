import { METADATA_FIELDS } from "../control/service.ts";
import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { EXIT, UsageError } from "./exit-codes.ts";
import { readResourceFile } from "./input.ts";
import { cell, renderTable, toJson } from "./output.ts";

interface TestAnswer {
  event: string;
  policies: { name: string; global: boolean; version: number; draft: boolean }[];
  decisions: {
    action: { target: string };
    effect: string;
    policy: { name: string; global: boolean; version: number } | null;
    rule: number | null;
    reason: string | null;
  }[];
}

/** `agentowl policy test`: what the policies would decide for a stored event, a draft included. */
const testCommand: Command = {
  name: ["policy", "test"],
  summary: "show what the policies (or a draft) would decide for a stored event",
  help: `Usage: agentowl policy test EVT_ID [--policy FILE [--global]] [--target NAME ...] [--json]

Evaluates the global policies and the event's tenant's own for a stored event's dispatch to each
of its endpoints (or to the --target endpoints): the effect (allow, deny, require_approval,
quarantine), the policy and version that decided, and the rule that matched, numbered from 1 in
the policy's rules list (- for the policy's default). The tenant is the event's; -t TENANT and
--event EVT_ID are accepted too. With --policy, the
draft in FILE (YAML or JSON) takes the place of the stored policy of the same name, shown as
version 0 (draft); with --global the draft is a global policy (admin only). Global policies are
shown as global:NAME. Nothing is stored or applied. Needs write access to the tenant.

${CONNECTION_HELP}

${API_EXIT_HELP}`,
  options: {
    tenant: { type: "string", short: "t" },
    event: { type: "string" },
    policy: { type: "string" },
    global: { type: "boolean" },
    target: { type: "string", multiple: true },
    json: { type: "boolean" },
    ...CONNECTION_OPTIONS,
  },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const flag = stringOpt(values, "event");
    if (flag !== undefined && positionals[0] !== undefined && flag !== positionals[0])
      throw new UsageError("give the event once: EVT_ID or --event EVT_ID");
    const event = positionals[0] ?? flag;
    if (!event) throw new UsageError("missing EVT_ID");
    const client = clientFor(values, io.env);
    // The event knows its tenant: ask it rather than make the user repeat it.
    const tenant =
      stringOpt(values, "tenant") ??
      String((await client.get<{ tenant: string }>(apiPath("events", event))).body.tenant);
    const policyFile = stringOpt(values, "policy");
    if (values.global && !policyFile) throw new UsageError("--global describes the draft of --policy FILE");
    const draft = policyFile ? await readResourceFile(io, policyFile) : undefined;
    if (draft) for (const f of METADATA_FIELDS) delete draft[f];
    const targets = values.target as string[] | undefined;
    const answer = await client.call<TestAnswer>("POST", `${apiPath("tenants", tenant)}/policy-test`, {
      json: { event, policy: draft, global: values.global === true, targets },
    });
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
        r.decisions.map((d) => [
          cell(d.action.target),
          cell(d.effect),
          d.policy ? `${named(d.policy)}@${d.policy.version === 0 ? "draft" : d.policy.version}` : "-",
          d.rule === null ? "-" : `#${d.rule + 1}`,
          cell(d.reason ?? "-"),
        ]),
      ),
    );
    return EXIT.ok;
  },
};

export const POLICY_COMMANDS: readonly Command[] = [testCommand];
