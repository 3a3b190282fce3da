import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { LIST_OPTIONS, listRows, pointInTime } from "./events.ts";
import { EXIT } from "./exit-codes.ts";
import { cell, renderTable, time, toJson } from "./output.ts";

/** `agentowl audit ls|verify`: the hash-chained audit log (guarantee 6 (docs/guarantees.md)). */

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
  options: {
    tenant: { type: "string", short: "t" },
    action: { type: "string" },
    actor: { type: "string" },
    event: { type: "string" },
    since: { type: "string" },
    until: { type: "string" },
    ...LIST_OPTIONS,
  },
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
            rows.map((e) => [
              cell(e.seq),
              time(e.at),
              cell(e.actor_name ? `${String(e.actor_name)} (${String(e.actor).replace(/^token:/, "")})` : e.actor),
              cell(e.tenant ?? "-"),
              cell(e.action),
              cell(e.target ?? "-"),
              cell(e.decision ?? "-"),
            ]),
          ),
    );
    return EXIT.ok;
  },
};

interface VerifyBody {
  ok: boolean;
  entries: number;
  head: string;
  problem: string | null;
  first_broken: { seq: number; reason: string } | null;
  last_good: { seq: number; hash: string } | null;
  missing: number;
  checkpoint: { seq: number; head: string; at: string } | null;
}

/** The human report: intact with the anchor it was checked against, or what broke and what still holds. */
export function renderVerify(r: VerifyBody): string {
  if (r.ok) {
    const anchor = r.checkpoint ? `; checkpoint of ${r.checkpoint.at} at entry ${r.checkpoint.seq}` : "";
    return `audit log intact: ${r.entries} entries, head ${r.head}${anchor}\n`;
  }
  const lines = [
    r.first_broken ? `audit log BROKEN at entry ${r.first_broken.seq}: ${r.first_broken.reason}` : "audit log BROKEN",
  ];
  if (r.problem) lines.push(`  ${r.problem}`);
  if (r.missing > 0) lines.push(`  missing entries: ${r.missing}`);
  lines.push(
    r.last_good ? `  last good entry: ${r.last_good.seq}, hash ${r.last_good.hash}` : "  last good entry: none",
  );
  if (r.checkpoint)
    lines.push(`  latest checkpoint: entry ${r.checkpoint.seq}, head ${r.checkpoint.head}, ${r.checkpoint.at}`);
  return `${lines.join("\n")}\n`;
}

const verifyCommand: Command = {
  name: ["audit", "verify"],
  summary: "check the audit log's keyed hash chain against its signed checkpoint",
  help: `Usage: agentowl audit verify [--expect-head [SEQ:]HASH] [--json]

Walks the whole audit log on the server and recomputes every entry's keyed hash (HMAC with the
appliance's audit key) from the one before it, and checks that the log still holds the latest
signed checkpoint's entries with its head hash at its position (checkpoints are written to
<data dir>/audit/checkpoints.jsonl and logged as "audit checkpoint" lines). Prints "intact" with
the number of entries and the head hash, or what is wrong: the first bad entry (changed, or the
one after a removed entry), how many entries are missing at the end against the checkpoint, a
missing or altered checkpoint file; and the last good entry with its hash.

--expect-head also checks a head kept elsewhere (a logged checkpoint, a note): the log must hold
an entry with that hash (at entry SEQ, when given).

Exit codes: 0 intact, 1 broken (or failed), 2 usage, 5 not authenticated or not allowed.

${CONNECTION_HELP}`,
  options: { "expect-head": { type: "string" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const res = await clientFor(values, io.env).send("GET", apiPath("audit", "verify"), {
      query: { expect_head: stringOpt(values, "expect-head") },
    });
    const r = (await res.json()) as VerifyBody;
    if (values.json) io.out(toJson(r));
    else if (r.ok) io.out(renderVerify(r));
    else io.err(renderVerify(r));
    return r.ok ? EXIT.ok : EXIT.failed;
  },
};

export const AUDIT_COMMANDS: readonly Command[] = [lsCommand, verifyCommand];
