import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { LIST_OPTIONS, listRows, pointInTime } from "./events.ts";
import { EXIT } from "./exit-codes.ts";
import { cell, renderTable, time, toJson } from "./output.ts";

/** `agentowl audit ls|verify`: the hash-chained audit log (SPEC §3.6). */

const lsCommand: Command = {
  name: ["audit", "ls"],
  summary: "list audit entries, newest first",
  help: `Usage: agentowl audit ls [-t TENANT] [--action ACTION] [--actor ACTOR] [--event EVT_ID]
                         [--since TIME] [--until TIME] [--limit N | --all] [--json]

Lists audit entries, newest first: who (actor) did what (action) to what (target), with the
decision when there was one. A tenant token sees its tenants' entries only. --event gives the
story of one event: its approvals, delivery attempts, retries, replays. TIME is ISO 8601 or a
duration ago (15m, 24h). ACTION: token.create, token.revoke, resource.create, resource.update,
resource.delete, config.apply, auth.sign_in, secret.set, secret.lease, approval.request,
approval.approve, delivery.attempt, delivery.dead, delivery.retry, delivery.discard,
event.replay, ...

${CONNECTION_HELP}

${API_EXIT_HELP}`,
  options: { tenant: { type: "string", short: "t" }, action: { type: "string" }, actor: { type: "string" }, event: { type: "string" }, since: { type: "string" }, until: { type: "string" }, ...LIST_OPTIONS },
  async run({ values }, io) {
    const query = {
      tenant: stringOpt(values, "tenant"),
      action: stringOpt(values, "action"),
      actor: stringOpt(values, "actor"),
      event: stringOpt(values, "event"),
      since: pointInTime(stringOpt(values, "since"), "--since"),
      until: pointInTime(stringOpt(values, "until"), "--until"),
    };
    const rows = await listRows(clientFor(values, io.env), apiPath("audit"), query, values, io, "audit entries");
    io.out(
      values.json
        ? toJson(rows)
        : renderTable(
            ["SEQ", "TIME", "ACTOR", "TENANT", "ACTION", "TARGET", "DECISION"],
            rows.map((e) => [cell(e.seq), time(e.at), cell(e.actor), cell(e.tenant ?? "-"), cell(e.action), cell(e.target ?? "-"), cell(e.decision ?? "-")]),
          ),
    );
    return EXIT.ok;
  },
};

const verifyCommand: Command = {
  name: ["audit", "verify"],
  summary: "check the audit log's hash chain, naming the first broken link",
  help: `Usage: agentowl audit verify [--json]

Walks the whole audit log on the server and recomputes every entry's hash from the one before
it. Prints "intact" with the number of entries and the head hash, or the first broken link: the
entry that was changed, or the one after an entry that was removed. Needs an admin token.

Exit codes: 0 intact, 1 broken (or failed), 2 usage, 5 not authenticated or not allowed.

${CONNECTION_HELP}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const res = await clientFor(values, io.env).send("GET", apiPath("audit", "verify"));
    const r = (await res.json()) as { ok: boolean; entries: number; head: string; first_broken: { seq: number; reason: string } | null };
    if (values.json) io.out(toJson(r));
    else if (r.ok) io.out(`audit log intact: ${r.entries} entries, head ${r.head}\n`);
    else io.err(`audit log BROKEN at entry ${r.first_broken!.seq}: ${r.first_broken!.reason} (${r.entries} entries before it are intact)\n`);
    return r.ok ? EXIT.ok : EXIT.failed;
  },
};

export const AUDIT_COMMANDS: readonly Command[] = [lsCommand, verifyCommand];
