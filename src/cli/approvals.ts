import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { APPROVAL_STATES } from "../store/schema/approvals.ts";
import { choiceOpt, type Command, type CommandArgs, type CommandIO, stringOpt } from "./command.ts";
import { LIST_OPTIONS, listRows } from "./events.ts";
import { EXIT, UsageError } from "./exit-codes.ts";
import { cell, renderTable, time, toJson, toYaml } from "./output.ts";

/** `agentowl approvals ls|show|approve|deny`: actions parked by a require_approval decision. */

const footer = `${CONNECTION_HELP}\n\n${API_EXIT_HELP}`;
const what = (a: Record<string, unknown>): string => {
  const action = (a.action ?? {}) as Record<string, unknown>;
  return action.kind === "dispatch"
    ? `dispatch to ${String(action.target)}`
    : `${String(action.kind)} ${String(action.tool ?? "")}`.trim();
};

/** The policy rule that parked it, as people number rules (from 1), with its name when it has one. */
const why = (a: Record<string, unknown>): string => {
  const p = (a.policy ?? {}) as Record<string, unknown>;
  const rule = typeof p.rule === "number" ? `, rule #${p.rule + 1}${p.rule_name ? ` ${String(p.rule_name)}` : ""}` : "";
  return `${p.global ? "global " : ""}policy ${String(p.name)} v${String(p.version)}${rule}${p.reason ? `: ${String(p.reason)}` : ""}`;
};

/** What a person needs to decide: what would happen, to which event, and why it waits. */
function approvalHeader(a: Record<string, unknown>): string {
  const event = a.event as Record<string, unknown> | null | undefined;
  const rows: [string, string][] = [
    ["approval", `${String(a.id)} (${String(a.state)}; tenant ${String(a.tenant)})`],
    ["action", what(a)],
    ["event", event ? `${String(event.id)} ${String(event.summary)}` : String(a.event_id ?? "-")],
    ["why", why(a)],
    ["expires", `${time(a.expires_at)}, then ${a.on_expiry === "approve" ? "approved" : "denied"}`],
  ];
  if (a.decided_by)
    rows.push([
      "decided",
      `${String(a.state)} by ${String(a.decided_by)} at ${time(a.decided_at)}${a.reason ? `: ${String(a.reason)}` : ""}`,
    ]);
  return rows.map(([k, v]) => `${`${k}:`.padEnd(10)}${v}`).join("\n") + "\n";
}

function idOf(args: CommandArgs): string {
  const id = args.positionals[0];
  if (!id) throw new UsageError("missing the approval id (apr_...)");
  return id;
}

const lsCommand: Command = {
  name: ["approvals", "ls"],
  summary: "list parked actions waiting for (or past) a decision",
  help: `Usage: agentowl approvals ls [-t TENANT] [--state pending|approved|denied|expired] [--limit N | --all] [--json]

Lists approvals, newest first: the parked action, the policy rule that parked it, its state,
and when it expires (and what happens then).

${footer}`,
  options: { tenant: { type: "string", short: "t" }, state: { type: "string" }, ...LIST_OPTIONS },
  async run({ values }, io) {
    const rows = await listRows(
      clientFor(values, io.env),
      apiPath("approvals"),
      { tenant: stringOpt(values, "tenant"), state: choiceOpt(values, "state", APPROVAL_STATES) },
      values,
      io,
      "approvals",
    );
    io.out(
      values.json
        ? toJson(rows)
        : renderTable(
            ["ID", "TENANT", "ACTION", "EVENT", "STATE", "EXPIRES", "ON EXPIRY", "DECIDED BY"],
            rows.map((a) => [
              cell(a.id),
              cell(a.tenant),
              cell(what(a)),
              cell((a.event as Record<string, unknown> | null)?.summary ?? "-", 50),
              cell(a.state),
              time(a.expires_at),
              cell(a.on_expiry),
              cell(a.decided_by ?? "-"),
            ]),
          ),
    );
    return EXIT.ok;
  },
};

const showCommand: Command = {
  name: ["approvals", "show"],
  summary: "show one approval",
  help: `Usage: agentowl approvals show APR_ID [--json]

Shows what a person needs to decide: the action that waits (e.g. the delivery to endpoint crm),
the event in one line (a mail's sender and subject, a webhook's binding and action), the policy
rule that parked it (rules numbered from 1, with the rule's name when it has one) and its reason,
when it expires and what happens then, and the decision once made. --json prints it whole.

${footer}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run(args, io) {
    const r = await clientFor(args.values, io.env).call("GET", apiPath("approvals", idOf(args)));
    io.out(args.values.json ? toJson(r.body) : approvalHeader(r.body));
    return EXIT.ok;
  },
};

async function decide(args: CommandArgs, io: CommandIO, verb: "approve" | "deny"): Promise<number> {
  const reason = stringOpt(args.values, "reason");
  if (verb === "deny" && !reason) throw new UsageError("a denial needs --reason TEXT");
  const r = await clientFor(args.values, io.env).call("POST", `${apiPath("approvals", idOf(args))}/${verb}`, {
    json: reason ? { reason } : {},
  });
  io.out(args.values.json ? toJson(r.body) : `${String(r.body.id)}: ${String(r.body.state)} (${what(r.body)})\n`);
  return EXIT.ok;
}

const approveCommand: Command = {
  name: ["approvals", "approve"],
  summary: "approve a parked action",
  help: `Usage: agentowl approvals approve APR_ID [--reason TEXT] [--json]

Approves a pending approval: its action goes ahead. The decision, its author and reason go to
the audit log. Exit 4 when it was already decided or has expired. Needs write access to its tenant.

${footer}`,
  options: { reason: { type: "string" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  run: (args, io) => decide(args, io, "approve"),
};

const denyCommand: Command = {
  name: ["approvals", "deny"],
  summary: "deny a parked action, with a reason",
  help: `Usage: agentowl approvals deny APR_ID --reason TEXT [--json]

Denies a pending approval: its action does not happen. The reason is required and goes to the
audit log with the decision. Exit 4 when it was already decided or has expired.

${footer}`,
  options: { reason: { type: "string" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  run: (args, io) => decide(args, io, "deny"),
};

export const APPROVAL_COMMANDS: readonly Command[] = [lsCommand, showCommand, approveCommand, denyCommand];
