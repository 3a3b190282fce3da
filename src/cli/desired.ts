import { API_EXIT_HELP, clientFor, CONNECTION_HELP, CONNECTION_OPTIONS } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { EXIT } from "./exit-codes.ts";
import { readInputFile } from "./input.ts";
import { progressFor, toJson } from "./output.ts";

/**
 * `agentowl validate|diff|apply -f FILE`: the desired-state file (docs/desired-state.md, docs/desired-state.md)
 * is sent as it is to POST /v1/config/<verb>; the server parses, plans and applies it in one
 * transaction and answers with a rendered plan. An invalid file is answered with every problem
 * as `file:line:col: message`, one per line.
 */
const APPLY_TIMEOUT_MS = 120_000;

const footer = `'-f -' reads the file from stdin. Problems are printed one per line as FILE:LINE:COL: message.

${CONNECTION_HELP}

${API_EXIT_HELP.replace("1 failed (invalid input: one line per problem)", "1 failed or the file is invalid")}`;

type Verb = "validate" | "diff" | "apply";

function desiredCommand(verb: Verb, summary: string, usage: string, about: string): Command {
  const prunes = verb !== "validate";
  return {
    name: [verb],
    summary,
    help: `Usage: agentowl ${verb} ${usage}

${about}

${footer}`,
    options: {
      file: { type: "string", short: "f" },
      ...(prunes ? { prune: { type: "boolean" } } : {}),
      ...(verb === "apply" ? { "dry-run": { type: "boolean" } } : {}),
      json: { type: "boolean" },
      ...CONNECTION_OPTIONS,
    },
    async run({ values }, io) {
      const { text, name } = await readInputFile(io, stringOpt(values, "file"));
      const client = clientFor(values, io.env);
      const progress = progressFor(
        io,
        `${verb === "apply" && !values["dry-run"] ? "applying" : "checking"} ${name}`,
        values,
      );
      progress.spin();
      let body: Record<string, unknown>;
      try {
        ({ body } = await client.call("POST", `/v1/config/${verb}`, {
          body: text,
          contentType: "application/yaml",
          query: {
            file: name,
            prune: values.prune ? "true" : undefined,
            dry_run: values["dry-run"] ? "true" : undefined,
          },
          timeoutMs: APPLY_TIMEOUT_MS,
        }));
      } finally {
        progress.done();
      }
      if (values.json) io.out(toJson(body));
      else if (verb === "validate") {
        const tenants = Array.isArray(body.tenants) ? (body.tenants as string[]) : [];
        io.out(`${name} is valid: ${tenants.length} tenant(s)${tenants.length ? ` (${tenants.join(", ")})` : ""}\n`);
      } else {
        io.out(String(body.text ?? ""));
        if (verb === "apply" && body.applied === false) io.out("dry run: nothing was changed\n");
      }
      return EXIT.ok;
    },
  };
}

export const DESIRED_COMMANDS: readonly Command[] = [
  desiredCommand(
    "validate",
    "check a desired-state file: schema and references",
    "-f FILE [--json]",
    "Checks FILE against the desired-state schema and the references between its resources,\nwithout looking at or changing what is applied.",
  ),
  desiredCommand(
    "diff",
    "show what applying a desired-state file would change",
    "-f FILE [--prune] [--json]",
    "Prints, per resource, what 'apply' would create, update (field by field) and, with --prune,\n" +
      "delete; then the counts. Changes nothing. Exit 0 whether or not there are changes.",
  ),
  desiredCommand(
    "apply",
    "make the appliance match a desired-state file, in one transaction",
    "-f FILE [--prune] [--dry-run] [--json]",
    "Creates and updates every resource FILE declares, in one transaction: all of it or nothing.\n" +
      "With --prune, also deletes the resources FILE does not declare (in tenants this token may\n" +
      "see; an admin token prunes whole tenants too). --dry-run plans without writing. Prints the\n" +
      "changes, then: N created, N updated, N unchanged, N deleted.",
  ),
];
