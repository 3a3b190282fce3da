import { API_EXIT_HELP, apiPath, clientFor, CONNECTION_HELP, CONNECTION_OPTIONS } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { EXIT, UsageError } from "./exit-codes.ts";
import { cell, listShowingProgress, renderTable, time, toJson } from "./output.ts";

/** `agentowl tokens ls|create|revoke`: API tokens (admin only). A token's value is shown once. */
type Token = Record<string, unknown>;

const footer = `Needs an admin token.\n\n${CONNECTION_HELP}\n\n${API_EXIT_HELP}`;

const lsCommand: Command = {
  name: ["tokens", "ls"],
  summary: "list API tokens (never their values)",
  help: `Usage: agentowl tokens ls [--json]

Lists every API token: id, name, scopes, when it was created, when it expires, whether it is
revoked. A token's value is never shown again after 'tokens create'.

${footer}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const items = await listShowingProgress<Token>(
      clientFor(values, io.env),
      apiPath("tokens"),
      io,
      "listing tokens",
      values,
    );
    io.out(
      values.json
        ? toJson(items)
        : renderTable(
            ["ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "REVOKED"],
            items.map((t) => [
              cell(t.id),
              cell(t.name),
              cell(t.scopes),
              time(t.created_at),
              t.expires_at ? time(t.expires_at) : "never",
              t.revoked_at ? time(t.revoked_at) : "-",
            ]),
          ),
    );
    return EXIT.ok;
  },
};

const createCommand: Command = {
  name: ["tokens", "create"],
  summary: "create an API token, printed once",
  help: `Usage: agentowl tokens create --name NAME --scope SCOPE [--scope SCOPE ...] [--expires-in 30d] [--json]

Creates an API token and prints its value once, alone on stdout (so TOKEN=$(agentowl tokens
create ...) captures it), with a reminder on stderr: store it now, the server keeps only its hash.
--json prints the whole answer, the value included.

Scopes: admin | tenant:NAME:read | tenant:NAME:write | ingest.
--expires-in: a duration such as 12h or 30d; without it the token does not expire.

${footer}`,
  options: {
    name: { type: "string" },
    scope: { type: "string", multiple: true },
    "expires-in": { type: "string" },
    json: { type: "boolean" },
    ...CONNECTION_OPTIONS,
  },
  async run({ values }, io) {
    const name = stringOpt(values, "name");
    const scopes = (values.scope as string[] | undefined) ?? [];
    if (!name) throw new UsageError("missing --name NAME");
    if (!scopes.length)
      throw new UsageError("missing --scope SCOPE (admin, tenant:NAME:read, tenant:NAME:write, ingest)");
    const expiresIn = stringOpt(values, "expires-in");
    const { body } = await clientFor(values, io.env).call<Token>("POST", apiPath("tokens"), {
      json: { name, scopes: [...new Set(scopes)], ...(expiresIn ? { expires_in: expiresIn } : {}) },
    });
    if (values.json) {
      io.out(toJson(body));
    } else {
      io.out(`${String(body.token)}\n`);
      io.err(
        `created token ${String(body.id)} '${name}' (${scopes.join(", ")}; expires ${body.expires_at ? time(body.expires_at) : "never"})\n` +
          "store it now: it is shown only this once, the server keeps only its hash\n",
      );
    }
    return EXIT.ok;
  },
};

const revokeCommand: Command = {
  name: ["tokens", "revoke"],
  summary: "revoke an API token",
  help: `Usage: agentowl tokens revoke ID

Revokes the token at once: requests made with it are refused from now on. It stays listed,
with the time it was revoked.

${footer}`,
  options: { ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const id = positionals[0];
    if (!id) throw new UsageError("missing ID (see 'agentowl tokens ls')");
    await clientFor(values, io.env).call("DELETE", apiPath("tokens", id), { notFound: `token ${id} not found` });
    io.out(`revoked token ${id}\n`);
    return EXIT.ok;
  },
};

export const TOKEN_COMMANDS: readonly Command[] = [lsCommand, createCommand, revokeCommand];
