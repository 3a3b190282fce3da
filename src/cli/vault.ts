import { API_EXIT_HELP, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { type Command, type CommandArgs, type CommandIO, stringOpt } from "./command.ts";
import { EXIT, UsageError } from "./exit-codes.ts";
import { cell, renderTable, time, toJson } from "./output.ts";

/**
 * `agentowl vault set|rotate|ls`: secrets are written, rotated and listed, never read back. A
 * value comes from stdin (a prompt that does not echo at a terminal), never from argv, where
 * other local users could see it in `ps`.
 */

const footer = `${CONNECTION_HELP}\n\n${API_EXIT_HELP}`;

function scopeOf(args: CommandArgs): { tenant: string; name: string } {
  const scope = args.positionals[0];
  const m = scope ? /^([^/]+)\/(.+)$/.exec(scope) : null;
  if (!m) throw new UsageError("missing the secret, as TENANT/NAME (e.g. beta/crm-signing)");
  return { tenant: m[1]!, name: m[2]! };
}

async function readValue(io: CommandIO, label: string): Promise<string> {
  const raw =
    io.tty?.stdin && io.readSecret ? await io.readSecret(`value for ${label}: `) : ((await io.readStdin?.()) ?? "");
  // One trailing newline is the shell's (echo, a file); anything else is part of the value.
  const value = raw.replace(/\r?\n$/, "");
  if (!value) throw new UsageError(`no value on stdin (e.g. agentowl vault set ${label} < value.txt)`);
  return value;
}

const setCommand: Command = {
  name: ["vault", "set"],
  summary: "store a new secret; its value is read from stdin",
  help: `Usage: agentowl vault set TENANT/NAME [--rotation-period 90d] [--json] < value

Stores a secret, sealed with its own data key. The value is read from stdin (at a terminal, a
prompt that does not echo), never from the command line. It is never shown again: deliveries and
verifiers get it through single-use leases. An existing secret is rotated, not set (exit 4).
--rotation-period records when it should be rotated, for reminders.

${footer}`,
  options: { "rotation-period": { type: "string" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run(args, io) {
    const { tenant, name } = scopeOf(args);
    const value = await readValue(io, `${tenant}/${name}`);
    const period = stringOpt(args.values, "rotation-period");
    const r = await clientFor(args.values, io.env).call("PUT", apiPath("tenants", tenant, "secrets", name), {
      json: { value, ...(period ? { rotation_period: period } : {}) },
    });
    io.out(args.values.json ? toJson(r.body) : `${tenant}/${name}: stored as version ${String(r.body.version)}\n`);
    return EXIT.ok;
  },
};

const rotateCommand: Command = {
  name: ["vault", "rotate"],
  summary: "store a new version of a secret; the old one stays valid for a grace period",
  help: `Usage: agentowl vault rotate TENANT/NAME [--grace 24h] [--json] < new-value

Stores a new version of a secret (value from stdin). The previous version stays valid for
--grace (default 24h), so receivers can switch without a gap; verifiers accept both meanwhile.

${footer}`,
  options: { grace: { type: "string" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run(args, io) {
    const { tenant, name } = scopeOf(args);
    const value = await readValue(io, `${tenant}/${name}`);
    const grace = stringOpt(args.values, "grace");
    const r = await clientFor(args.values, io.env).call(
      "POST",
      `${apiPath("tenants", tenant, "secrets", name)}/rotate`,
      { json: { value, ...(grace ? { grace } : {}) } },
    );
    io.out(args.values.json ? toJson(r.body) : `${tenant}/${name}: now at version ${String(r.body.version)}\n`);
    return EXIT.ok;
  },
};

const lsCommand: Command = {
  name: ["vault", "ls"],
  summary: "list a tenant's secrets: names, versions, rotation (never values)",
  help: `Usage: agentowl vault ls -t TENANT [--json]

Lists a tenant's secrets: name, current version, when it was set, older versions still valid
(and until when), and when rotation is due. Never their values.

${footer}`,
  options: { tenant: { type: "string", short: "t" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const tenant = stringOpt(values, "tenant");
    if (!tenant) throw new UsageError("missing -t TENANT");
    const r = await clientFor(values, io.env).call<{ items: Record<string, unknown>[] }>(
      "GET",
      apiPath("tenants", tenant, "secrets"),
    );
    const items = r.body.items;
    io.out(
      values.json
        ? toJson(items)
        : renderTable(
            ["NAME", "VERSION", "SET", "PREVIOUS VALID UNTIL", "ROTATION DUE"],
            items.map((s) => {
              const versions = s.versions as { version: number; created_at: string; valid_until: string | null }[];
              const grace = versions.filter((v) => v.valid_until).map((v) => `v${v.version} ${time(v.valid_until)}`);
              return [
                cell(s.name),
                cell(s.version),
                time(versions[0]?.created_at),
                grace.join(", ") || "-",
                s.rotation_due_at ? time(s.rotation_due_at) : "-",
              ];
            }),
          ),
    );
    return EXIT.ok;
  },
};

const rotateMasterCommand: Command = {
  name: ["vault", "rotate-master"],
  summary: "re-wrap every secret's data key under a new master key, without downtime",
  help: `Usage: agentowl vault rotate-master [--json]

Makes a new vault master key and re-wraps every secret's data key with it while the appliance
keeps serving; the secrets' values are not re-encrypted. The old key file is kept as
master.key.previous. Back up the new master.key: without it the secrets cannot be opened.
Needs an admin token.

${footer}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const r = await clientFor(values, io.env).call("POST", `${apiPath("vault")}/rotate-master`, { json: {} });
    io.out(
      values.json
        ? toJson(r.body)
        : `master key rotated: ${String(r.body.rewrapped)} data key(s) re-wrapped, now ${String(r.body.master_key_id)}\n`,
    );
    return EXIT.ok;
  },
};

export const VAULT_COMMANDS: readonly Command[] = [setCommand, rotateCommand, lsCommand, rotateMasterCommand];
