import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { choiceOpt, type Command, type CommandIO } from "./command.ts";
import { PASSWORD_MIN } from "../users/index.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { cell, listShowingProgress, renderTable, time, toJson } from "./output.ts";

/**
 * `agentowl users add|ls|passwd|rm`: the console's users (docs/console.md#users-and-sign-in), through
 * /v1/users (admin only). A password is read from stdin (at a terminal, a prompt that does not
 * echo, asked twice), never from argv, where other local users could see it in `ps`.
 */
type User = Record<string, unknown>;

const footer = `Needs an admin token.\n\n${CONNECTION_HELP}\n\n${API_EXIT_HELP}`;
const ROLES = ["admin", "member"] as const;

function nameArg(positionals: string[], example: string): string {
  const name = positionals[0];
  if (!name) throw new UsageError(`missing the username (e.g. ${example})`);
  return name;
}

async function readPassword(io: CommandIO, name: string, example: string): Promise<string> {
  if (io.tty?.stdin && io.readSecret) {
    const first = await io.readSecret(`password for ${name}: `);
    const again = await io.readSecret(`the same again: `);
    if (first !== again) throw new UsageError("the two passwords differ; nothing was changed");
    if (!first) throw new UsageError("no password typed");
    return first;
  }
  // One trailing newline is the shell's (echo, a file); anything else is part of the password.
  const value = ((await io.readStdin?.()) ?? "").replace(/\r?\n$/, "");
  if (!value) throw new UsageError(`no password on stdin (e.g. ${example})`);
  return value;
}

function checkLength(password: string): void {
  if (password.length < PASSWORD_MIN)
    throw new UsageError(`the password must be at least ${PASSWORD_MIN} characters; nothing was changed`);
}

/** The server's refusal as its one sentence: a field error of /v1/users repeats what the detail says. */
async function oneLine<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof CommandFailure && e.lines.length) throw new CommandFailure(e.message, e.exitCode, [], e.transient);
    throw e;
  }
}

const addCommand: Command = {
  name: ["users", "add"],
  summary: "create a console user; the password is read from stdin",
  help: `Usage: agentowl users add NAME [--role admin|member] [--tenant TENANT ...] [--json] < password

Creates a user who signs in to the web console. The password (at least 12 characters) is read
from stdin, or asked twice without echo at a terminal; never from the command line, and never
shown again. --role member (the default) needs one --tenant or more: a member sees and acts only
in those tenants. An admin works in every tenant. A taken name exits 4.

${footer}`,
  options: {
    role: { type: "string" },
    tenant: { type: "string", short: "t", multiple: true },
    json: { type: "boolean" },
    ...CONNECTION_OPTIONS,
  },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const name = nameArg(positionals, "agentowl users add ann --tenant beta");
    const role = choiceOpt(values, "role", ROLES) ?? "member";
    const tenants = [...new Set((values.tenant as string[] | undefined) ?? [])];
    if (role === "member" && !tenants.length) throw new UsageError("a member needs --tenant TENANT (or --role admin)");
    if (role === "admin" && tenants.length) throw new UsageError("an admin works in every tenant: drop --tenant");
    const password = await readPassword(io, name, `agentowl users add ${name} --role ${role} < password.txt`);
    checkLength(password);
    const { body } = await oneLine(
      clientFor(values, io.env).call<User>("POST", apiPath("users"), {
        json: { username: name, password, role, ...(role === "member" ? { tenants } : {}) },
      }),
    );
    io.out(
      values.json
        ? toJson(body)
        : `created user ${String(body.username)} (${role === "admin" ? "admin" : `member of ${tenants.join(", ")}`})\n`,
    );
    return EXIT.ok;
  },
};

const lsCommand: Command = {
  name: ["users", "ls"],
  summary: "list console users (never their passwords)",
  help: `Usage: agentowl users ls [--json]

Lists the console's users: name, role, tenants, when created, and until when one is locked
after repeated wrong passwords.

${footer}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const items = await listShowingProgress<User>(
      clientFor(values, io.env),
      apiPath("users"),
      io,
      "listing users",
      values,
    );
    io.out(
      values.json
        ? toJson(items)
        : renderTable(
            ["USERNAME", "ROLE", "TENANTS", "CREATED", "LOCKED UNTIL"],
            items.map((u) => [
              cell(u.username),
              cell(u.role),
              u.role === "admin" ? "(all)" : cell(u.tenants),
              time(u.created_at),
              u.locked_until ? time(u.locked_until) : "-",
            ]),
          ),
    );
    return EXIT.ok;
  },
};

const passwdCommand: Command = {
  name: ["users", "passwd"],
  summary: "set a console user's password; their sessions end",
  help: `Usage: agentowl users passwd NAME < password

Sets a new password (read from stdin, or asked twice without echo at a terminal). Every console
session of the user ends at once, and a lock after wrong passwords is lifted.

${footer}`,
  options: { ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const name = nameArg(positionals, "agentowl users passwd ann");
    const password = await readPassword(io, name, `agentowl users passwd ${name} < password.txt`);
    checkLength(password);
    await oneLine(
      clientFor(values, io.env).call("PUT", `${apiPath("users", name)}/password`, {
        json: { password },
        notFound: `user ${name} not found`,
      }),
    );
    io.out(`password of ${name} changed; their console sessions have ended\n`);
    return EXIT.ok;
  },
};

const rmCommand: Command = {
  name: ["users", "rm"],
  summary: "delete a console user; their sessions end",
  help: `Usage: agentowl users rm NAME

Deletes the user; their console sessions end at once. What they did stays in the audit log.

${footer}`,
  options: { ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const name = nameArg(positionals, "agentowl users rm ann");
    await clientFor(values, io.env).call("DELETE", apiPath("users", name), { notFound: `user ${name} not found` });
    io.out(`deleted user ${name}\n`);
    return EXIT.ok;
  },
};

export const USER_COMMANDS: readonly Command[] = [addCommand, lsCommand, passwdCommand, rmCommand];
