import { GLOBAL, type Kind } from "../control/resources/specs.ts";
import { API_EXIT_HELP, apiPath, clientFor, CONNECTION_HELP, CONNECTION_OPTIONS } from "./client.ts";
import { type Command, type CommandArgs, stringOpt } from "./command.ts";
import { EXIT, UsageError } from "./exit-codes.ts";
import { readResourceFile } from "./input.ts";
import { cell, listShowingProgress, renderTable, time, toJson, toYaml } from "./output.ts";

/**
 * `agentowl <kind> ls|get|create|update|delete`: tenants and every tenant-scoped kind, the same
 * five commands each, over /v1/tenants[/:tenant/<kind>][/:name]. Plus `policies versions`.
 */
type Resource = Record<string, unknown>;

interface View {
  plural: "tenants" | Kind;
  singular: string;
  /** The columns of `ls`, after NAME. */
  columns: [header: string, value: (r: Resource) => string][];
}

const version: View["columns"][number] = ["VERSION", (r) => cell(r.resource_version)];
const updated: View["columns"][number] = ["UPDATED", (r) => time(r.updated_at)];
const matchText = (m: unknown): string =>
  m && typeof m === "object" && Object.keys(m).length
    ? Object.entries(m)
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
        .join(" ")
    : "*";

const VIEWS: View[] = [
  { plural: "tenants", singular: "tenant", columns: [["DISPLAY NAME", (r) => cell(r.display_name)], version, updated] },
  { plural: "endpoints", singular: "endpoint", columns: [["URL", (r) => cell(r.url)], version, updated] },
  {
    plural: "bindings",
    singular: "binding",
    columns: [
      ["TYPE", (r) => cell(r.type)],
      ["ADDRESSES", (r) => cell(r.addresses ?? r.numbers)],
      ["VERIFY", (r) => cell((r.verify as Resource | undefined)?.scheme)],
      version,
      updated,
    ],
  },
  {
    plural: "routes",
    singular: "route",
    columns: [
      ["MATCH", (r) => cell(matchText(r.match))],
      ["TO", (r) => cell(r.to)],
      ["PRIORITY", (r) => cell(r.priority)],
      version,
      updated,
    ],
  },
  {
    plural: "policies",
    singular: "policy",
    columns: [
      ["RULES", (r) => cell(Array.isArray(r.rules) ? r.rules.length : 0)],
      ["DEFAULT", (r) => cell(r.default)],
      version,
      updated,
    ],
  },
  {
    plural: "templates",
    singular: "template",
    columns: [
      ["MODEL", (r) => cell((r.model as Resource | undefined)?.model)],
      ["TOOLS", (r) => cell(Array.isArray(r.tools) ? r.tools.length : 0)],
      version,
      updated,
    ],
  },
];

const scoped = (v: View): boolean => v.plural !== "tenants";
const a = (v: View): string => `${/^[aeiou]/.test(v.singular) ? "an" : "a"} ${v.singular}`;
const TENANT_OPTION = { tenant: { type: "string", short: "t" } } as const;
/** Policies are a tenant's (-t) or global (--global, admin only). */
const hasGlobal = (v: View): boolean => v.plural === "policies";
const ownerOptions = (v: View) =>
  !scoped(v) ? {} : hasGlobal(v) ? { ...TENANT_OPTION, global: { type: "boolean" } } : TENANT_OPTION;
const JSON_OPTION = { json: { type: "boolean" } } as const;
const IF_MATCH_OPTION = { "if-match": { type: "string" } } as const;
const FILE_OPTION = { file: { type: "string", short: "f" } } as const;

/**
 * `-t TENANT` of a tenant-scoped kind (or GLOBAL with --global), or from the file: a `get` saved
 * to a file names its tenant, or says `global: true`.
 */
function tenantOf(v: View, values: CommandArgs["values"], spec?: Resource): string | undefined {
  if (!scoped(v)) return undefined;
  const named = stringOpt(values, "tenant");
  if (hasGlobal(v) && values.global) {
    if (named !== undefined) throw new UsageError("-t TENANT and --global exclude each other");
    return GLOBAL;
  }
  const tenant =
    named ??
    (typeof spec?.tenant === "string" ? spec.tenant : hasGlobal(v) && spec?.global === true ? GLOBAL : undefined);
  if (!tenant) throw new UsageError(hasGlobal(v) ? "missing -t TENANT (or --global)" : "missing -t TENANT");
  return tenant;
}

const collectionPath = (v: View, tenant: string | undefined): string =>
  tenant === undefined
    ? apiPath("tenants")
    : tenant === GLOBAL
      ? apiPath(v.plural)
      : apiPath("tenants", tenant, v.plural);
const itemPath = (v: View, tenant: string | undefined, name: string): string =>
  tenant === undefined
    ? apiPath("tenants", name)
    : tenant === GLOBAL
      ? apiPath(v.plural, name)
      : apiPath("tenants", tenant, v.plural, name);
const label = (v: View, tenant: string | undefined, name: string): string =>
  tenant === undefined
    ? `${v.singular} ${name}`
    : tenant === GLOBAL
      ? `global ${v.singular} ${name}`
      : `${v.singular} ${tenant}/${name}`;

function ifMatchOf(values: CommandArgs["values"]): number | undefined {
  const raw = stringOpt(values, "if-match");
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`--if-match takes a resource_version (a whole number), not '${raw}'`);
  return Number(raw);
}

function nameArg(positionals: string[], what: string): string {
  const name = positionals[0];
  if (!name) throw new UsageError(`missing ${what}`);
  return name;
}

const tFlag = (v: View): string => (!scoped(v) ? "" : hasGlobal(v) ? " (-t TENANT | --global)" : " -t TENANT");
const footer = `${CONNECTION_HELP}\n\n${API_EXIT_HELP}`;

function lsCommand(v: View): Command {
  return {
    name: [v.plural, "ls"],
    summary: `list ${scoped(v) ? `a tenant's ${v.plural}` : "tenants"}`,
    help: `Usage: agentowl ${v.plural} ls${tFlag(v)} [--json] [--page-size N]

Lists every ${v.singular}${scoped(v) ? " of TENANT" : " this token can see"}, following the API's pages to the end
(--page-size per request, default 100): a table, or with --json the items as one JSON array.

${footer}`,
    options: { ...ownerOptions(v), ...JSON_OPTION, "page-size": { type: "string" }, ...CONNECTION_OPTIONS },
    async run({ values }, io) {
      const tenant = tenantOf(v, values);
      const pageSize = Number(stringOpt(values, "page-size") ?? 100);
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 500)
        throw new UsageError("--page-size takes a whole number from 1 to 500");
      const client = clientFor(values, io.env);
      const items = await listShowingProgress<Resource>(
        client,
        collectionPath(v, tenant),
        io,
        `listing ${v.plural}`,
        values,
        {
          pageSize,
          notFound: `tenant ${tenant} not found`,
        },
      );
      if (values.json) io.out(toJson(items));
      else if (!items.length)
        io.out(
          `no ${tenant === GLOBAL ? "global " : ""}${v.plural}${tenant && tenant !== GLOBAL ? ` in tenant ${tenant}` : ""}\n`,
        );
      else
        io.out(
          renderTable(
            ["NAME", ...v.columns.map(([h]) => h)],
            items.map((r) => [cell(r.name), ...v.columns.map(([, f]) => f(r))]),
          ),
        );
      return EXIT.ok;
    },
  };
}

function getCommand(v: View): Command {
  return {
    name: [v.plural, "get"],
    summary: `show one ${v.singular} (YAML, or --json)`,
    help: `Usage: agentowl ${v.plural} get${tFlag(v)} NAME [--json]

Prints the ${v.singular} as YAML (--json: as JSON), with its resource_version. Saved to a file,
it is a valid input for '${v.plural} update -f FILE', which then refuses to overwrite a newer change.

${footer}`,
    options: { ...ownerOptions(v), ...JSON_OPTION, ...CONNECTION_OPTIONS },
    maxPositionals: 1,
    async run({ values, positionals }, io) {
      const tenant = tenantOf(v, values);
      const name = nameArg(positionals, "NAME");
      const { body } = await clientFor(values, io.env).get<Resource>(itemPath(v, tenant, name), {
        notFound: `${label(v, tenant, name)} not found`,
      });
      io.out(values.json ? toJson(body) : toYaml(body));
      return EXIT.ok;
    },
  };
}

function createCommand(v: View): Command {
  const tenantsByName = !scoped(v);
  return {
    name: [v.plural, "create"],
    summary: `create ${a(v)} from a YAML or JSON file`,
    help: `Usage: agentowl ${v.plural} create${tFlag(v)} ${tenantsByName ? "NAME | -f FILE" : "-f FILE"} [NAME] [--json]

Creates the ${v.singular} described in FILE (YAML, or JSON for a .json file; '-' reads stdin).
NAME, when given, fills in or must equal the file's name.${
      scoped(v) ? " TENANT may also come from the\nfile's tenant field (as 'get' prints it)." : ""
    } An existing ${v.singular} of that name is a
conflict (exit 4): change it with 'update'.

${footer}`,
    options: { ...ownerOptions(v), ...FILE_OPTION, ...JSON_OPTION, ...CONNECTION_OPTIONS },
    maxPositionals: 1,
    async run({ values, positionals }, io) {
      const file = stringOpt(values, "file");
      const spec: Resource = file !== undefined || !tenantsByName ? await readResourceFile(io, file) : {};
      const name = positionals[0] ?? spec.name;
      if (typeof name !== "string" || !name)
        throw new UsageError(tenantsByName ? "missing NAME or -f FILE" : "missing the name: in FILE, or as NAME");
      if (spec.name !== undefined && spec.name !== name)
        throw new UsageError(`NAME '${name}' differs from the file's name '${String(spec.name)}'`);
      const tenant = tenantOf(v, values, spec);
      const { body } = await clientFor(values, io.env).call<Resource>("POST", collectionPath(v, tenant), {
        json: { ...spec, name },
        notFound: `tenant ${tenant} not found`,
      });
      io.out(
        values.json ? toJson(body) : `created ${label(v, tenant, name)} (resource_version ${body.resource_version})\n`,
      );
      return EXIT.ok;
    },
  };
}

function updateCommand(v: View): Command {
  return {
    name: [v.plural, "update"],
    summary: `replace ${a(v)} with a file's content, refusing lost updates`,
    help: `Usage: agentowl ${v.plural} update${tFlag(v)} [NAME] -f FILE [--if-match VERSION] [--json]

Replaces the ${v.singular} with the one described in FILE (PUT). It is never a blind overwrite: the
change applies only to the version it was made from, taken from --if-match, else the file's
resource_version (a file saved from 'get'), else the version current when the command starts.
If someone changed the ${v.singular} since, nothing is written and the exit code is 4.

${footer}`,
    options: { ...ownerOptions(v), ...FILE_OPTION, ...IF_MATCH_OPTION, ...JSON_OPTION, ...CONNECTION_OPTIONS },
    maxPositionals: 1,
    async run({ values, positionals }, io) {
      const spec = await readResourceFile(io, stringOpt(values, "file"));
      const name = positionals[0] ?? spec.name;
      if (typeof name !== "string" || !name) throw new UsageError("missing the name: in FILE, or as NAME");
      const tenant = tenantOf(v, values, spec);
      const path = itemPath(v, tenant, name);
      const client = clientFor(values, io.env);
      const notFound = `${label(v, tenant, name)} not found`;
      let base = ifMatchOf(values) ?? (typeof spec.resource_version === "number" ? spec.resource_version : undefined);
      // No version named: the one read now, so a change made while this runs is still detected.
      base ??= (await client.get<Resource>(path, { notFound })).body.resource_version as number;
      const { body } = await client.call<Resource>("PUT", path, { json: { ...spec, name }, ifMatch: base, notFound });
      const said =
        body.resource_version === base
          ? `${label(v, tenant, name)} unchanged (resource_version ${base})`
          : `updated ${label(v, tenant, name)} (resource_version ${base} → ${body.resource_version})`;
      io.out(values.json ? toJson(body) : `${said}\n`);
      return EXIT.ok;
    },
  };
}

function deleteCommand(v: View): Command {
  return {
    name: [v.plural, "delete"],
    summary: `delete ${a(v)}`,
    help: `Usage: agentowl ${v.plural} delete${tFlag(v)} NAME [--if-match VERSION]

Deletes the ${v.singular}; with --if-match, only if it is still at that resource_version (else
exit 4). A ${v.singular} that others still refer to is not deleted (exit 4, naming them).${scoped(v) ? "" : "\nNeeds an admin token."}

${footer}`,
    options: { ...ownerOptions(v), ...IF_MATCH_OPTION, ...CONNECTION_OPTIONS },
    maxPositionals: 1,
    async run({ values, positionals }, io) {
      const tenant = tenantOf(v, values);
      const name = nameArg(positionals, "NAME");
      await clientFor(values, io.env).call("DELETE", itemPath(v, tenant, name), {
        ifMatch: ifMatchOf(values),
        notFound: `${label(v, tenant, name)} not found`,
      });
      io.out(`deleted ${label(v, tenant, name)}\n`);
      return EXIT.ok;
    },
  };
}

const policyVersionsCommand: Command = {
  name: ["policies", "versions"],
  summary: "list a policy's versions, newest last",
  help: `Usage: agentowl policies versions (-t TENANT | --global) NAME [--json]

Lists every version of the policy: its resource_version, the operation, who made it and when.
With --json, the versions with their full spec.

${footer}`,
  options: { ...TENANT_OPTION, global: { type: "boolean" }, ...JSON_OPTION, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const v = VIEWS.find((x) => x.plural === "policies")!;
    const tenant = tenantOf(v, values);
    const name = nameArg(positionals, "NAME");
    const items = await clientFor(values, io.env).listAll<Resource>(`${itemPath(v, tenant, name)}/versions`, {
      notFound: `${label(v, tenant, name)} not found`,
    });
    io.out(
      values.json
        ? toJson(items)
        : renderTable(
            ["VERSION", "OP", "ACTOR", "CHANGED"],
            items.map((r) => [cell(r.resource_version), cell(r.op), cell(r.actor), time(r.changed_at)]),
          ),
    );
    return EXIT.ok;
  },
};

export const RESOURCE_COMMANDS: readonly Command[] = VIEWS.flatMap((v) => [
  lsCommand(v),
  getCommand(v),
  createCommand(v),
  updateCommand(v),
  deleteCommand(v),
  ...(v.plural === "policies" ? [policyVersionsCommand] : []),
]);
