import YAML from "yaml";
import { RUNTIME_STATES } from "../agents/types.ts";
import { API_EXIT_HELP, type ApiClient, apiPath, CONNECTION_HELP, CONNECTION_OPTIONS, clientFor } from "./client.ts";
import { choiceOpt, type Command, type CommandArgs, type CommandIO, stringOpt } from "./command.ts";
import { LIST_OPTIONS, listRows, type Row } from "./events.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { readInputFile } from "./input.ts";
import { cell, renderTable, safeText, time, toJson } from "./output.ts";

/**
 * `agentowl agents ls|show|claim|release|destroy|logs|sync|pool|tools` over /v1/agents,
 * /v1/tenants/:tenant/agents and /v1/tools (docs/agents.md). A runtime is named by its id; the
 * commands that act on a claimed one find its tenant themselves unless -t says it.
 */
const footer = `${CONNECTION_HELP}\n\n${API_EXIT_HELP}`;
const TENANT = { tenant: { type: "string", short: "t" } } as const;
const JSON_OPTION = { json: { type: "boolean" } } as const;

/** `support@v3`, or "-" for a runtime no claim has bound yet. */
export const templateText = (r: Row): string => (r.template ? `${cell(r.template)}@v${cell(r.template_version)}` : "-");

/** The state, and that a destroy is under way. */
export const stateText = (r: Row): string => `${cell(r.state)}${r.destroying ? " (destroying)" : ""}`;

export const AGENT_COLUMNS = ["ID", "STATE", "TENANT", "AGENT", "TEMPLATE", "ISOLATION", "HEARTBEAT", "SYNCED"];

export const agentRow = (r: Row): string[] => [
  cell(r.id),
  stateText(r),
  cell(r.tenant),
  cell(r.agent),
  templateText(r),
  cell(r.isolation),
  time(r.heartbeat_at),
  time(r.synced_at),
];

const pad = (k: string) => `${k}:`.padEnd(11);

/** One runtime for people: what it is, where it stands, how to reach it, its tools. */
export function agentText(r: Row): string {
  const lines: [string, string][] = [
    ["runtime", `${cell(r.id)} (${stateText(r)}${r.tenant ? `; tenant ${cell(r.tenant)}` : ""})`],
  ];
  if (r.agent) lines.push(["agent", cell(r.agent)]);
  if (r.template)
    lines.push(["template", `${templateText(r)} (${r.synced_at ? `synced ${time(r.synced_at)}` : "never synced"})`]);
  lines.push(["isolation", cell(r.isolation)]);
  if (r.pid !== null && r.pid !== undefined) lines.push(["process", `pid ${cell(r.pid)}`]);
  lines.push(["created", time(r.created_at)]);
  if (r.claimed_at) lines.push(["claimed", `${time(r.claimed_at)} (${r.cold ? "cold" : "warm"})`]);
  lines.push(["heartbeat", r.heartbeat_at ? time(r.heartbeat_at) : "never"]);
  if (r.stuck_at) lines.push(["stuck", time(r.stuck_at)]);
  if (r.deleted_at) lines.push(["deleted", time(r.deleted_at)]);
  if (r.error) lines.push(["error", cell(r.error, 200)]);
  let text = lines.map(([k, v]) => `${pad(k)}${v}`).join("\n") + "\n";
  const addresses = Object.entries((r.addresses ?? {}) as Record<string, unknown>);
  if (addresses.length)
    text += `\naddresses:\n${addresses.map(([k, v]) => `  ${cell(k)}: ${cell(v, 200)}`).join("\n")}\n`;
  const tools = (r.tools ?? []) as Row[];
  if (tools.length)
    text +=
      "\n" +
      renderTable(
        ["TOOL", "PLUGIN", "PROVISIONING", "STATE", "RESOURCE", "SECRET"],
        tools.map((x) => [
          cell(x.tool),
          cell(x.plugin),
          cell(x.provisioning),
          cell(x.state),
          cell(x.resource_id),
          cell(x.secret_ref),
        ]),
      );
  return text;
}

/** The pool's answer for people. */
export function poolText(p: Row): string {
  const byState = (p.by_state ?? {}) as Record<string, unknown>;
  const isolation =
    p.isolation === "process" && p.isolation_reason
      ? `process (no sandbox: ${cell(p.isolation_reason, 200)})`
      : cell(p.isolation);
  return (
    [
      ["min_idle", cell(p.min_idle)],
      ["isolation", isolation],
      ["on empty", p.on_empty === "429" ? "answer 429 with Retry-After" : "start a runtime cold"],
      ["runtimes", RUNTIME_STATES.map((s) => `${s} ${cell(byState[s] ?? 0)}`).join(", ")],
    ]
      .map(([k, v]) => `${pad(k!)}${v}`)
      .join("\n") + "\n"
  );
}

function idArg(args: CommandArgs): string {
  const id = args.positionals[0];
  if (!id) throw new UsageError("missing the runtime id (rt_...; see 'agentowl agents ls')");
  return id;
}

/** -t, else the tenant that claimed it (asked of the API); none: the runtime is not claimed. */
async function tenantOf(client: ApiClient, args: CommandArgs, id: string, doing: string): Promise<string> {
  const named = stringOpt(args.values, "tenant");
  if (named !== undefined) return named;
  const { body } = await client.get<Row>(apiPath("agents", id), { notFound: `runtime ${id} not found` });
  if (typeof body.tenant !== "string")
    throw new CommandFailure(`runtime ${id} is ${String(body.state)}, not claimed: nothing to ${doing}`, EXIT.conflict);
  return body.tenant;
}

/** One runtime's path: under its tenant with -t, else by id alone. */
const runtimePath = (values: CommandArgs["values"], id: string, ...rest: string[]) => {
  const tenant = stringOpt(values, "tenant");
  return tenant === undefined ? apiPath("agents", id, ...rest) : apiPath("tenants", tenant, "agents", id, ...rest);
};

/** The claim's per-tool config from a YAML or JSON file: `{<tool id>: {<setting>: value}}`. */
async function userConfigOf(io: CommandIO, path: string | undefined): Promise<Record<string, unknown> | undefined> {
  if (path === undefined) return undefined;
  const { text, name } = await readInputFile(io, path);
  let value: unknown;
  try {
    value = path.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw new CommandFailure(
      `${name}: not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${(e as Error).message.split("\n")[0]}`,
      EXIT.failed,
    );
  }
  const isMap = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isMap(value) || !Object.values(value as object).every(isMap))
    throw new CommandFailure(
      `${name}: must map each tool id to its settings (e.g. "crm: {api_key: ...}")`,
      EXIT.failed,
    );
  return value as Record<string, unknown>;
}

const lsCommand: Command = {
  name: ["agents", "ls"],
  summary: "list agent runtimes: state, tenant, agent, template, isolation, heartbeat",
  help: `Usage: agentowl agents ls [-t TENANT] [--state ${RUNTIME_STATES.join("|")}] [--limit N | --all] [--json]

Lists runtimes, oldest first: the claimed runtimes of the tenants this token sees, and for an
admin also the warm ones (ready) and those starting, stuck or deleted. TEMPLATE is the template
and the version the runtime runs; SYNCED when a newer version was last rolled onto it ('agents
sync'). ISOLATION says how each runtime is sandboxed: bwrap, sandbox-exec, or process (none).

${footer}`,
  options: { ...TENANT, state: { type: "string" }, ...LIST_OPTIONS },
  async run({ values }, io) {
    const rows = await listRows(
      clientFor(values, io.env),
      apiPath("agents"),
      { tenant: stringOpt(values, "tenant"), state: choiceOpt(values, "state", RUNTIME_STATES) },
      values,
      io,
      "runtimes",
    );
    if (values.json) io.out(toJson(rows));
    else if (!rows.length) io.out("no runtimes\n");
    else io.out(renderTable(AGENT_COLUMNS, rows.map(agentRow)));
    return EXIT.ok;
  },
};

const showCommand: Command = {
  name: ["agents", "show"],
  summary: "show one runtime with its tools and addresses",
  help: `Usage: agentowl agents show RT_ID [-t TENANT] [--json]

Shows a runtime: its state, tenant, agent, template version and when it last synced, its
isolation and process, its heartbeat, the addresses its tools provisioned (an email address, a
webhook binding, a number) and each tool with its provisioning and state.

${footer}`,
  options: { ...TENANT, ...JSON_OPTION, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run(args, io) {
    const id = idArg(args);
    const { body } = await clientFor(args.values, io.env).get<Row>(runtimePath(args.values, id), {
      notFound: `runtime ${id} not found`,
    });
    io.out(args.values.json ? toJson(body) : agentText(body));
    return EXIT.ok;
  },
};

const claimCommand: Command = {
  name: ["agents", "claim"],
  summary: "claim a runtime for an agent of a tenant, from a template",
  help: `Usage: agentowl agents claim -t TENANT --template NAME --agent NAME [-f USER_CONFIG] [--json]

Takes a warm runtime (or starts one, a cold claim, when none is ready), provisions the
template's tools, configures it, and prints its id and where the agent is reached. AGENT is the
agent's name in the tenant (its email tool's address is AGENT@TENANT.<mail domain>).

-f USER_CONFIG: a YAML or JSON file ('-' reads stdin) mapping each tool id to its settings; for
a tool with 'provisioning: user' its credentials, which go to the vault, never to the runtime.
When the pool is empty and set to refuse (agents_on_empty: 429), the claim fails: try again later.

${footer}`,
  options: {
    ...TENANT,
    template: { type: "string" },
    agent: { type: "string" },
    file: { type: "string", short: "f" },
    ...JSON_OPTION,
    ...CONNECTION_OPTIONS,
  },
  async run({ values }, io) {
    const tenant = stringOpt(values, "tenant");
    const template = stringOpt(values, "template");
    const agent = stringOpt(values, "agent");
    if (!tenant) throw new UsageError("missing -t TENANT");
    if (!template) throw new UsageError("missing --template NAME");
    if (!agent) throw new UsageError("missing --agent NAME");
    const userConfig = await userConfigOf(io, stringOpt(values, "file"));
    const { body } = await clientFor(values, io.env).call<Row>("POST", apiPath("tenants", tenant, "agents"), {
      json: { template, agent, ...(userConfig ? { user_config: userConfig } : {}) },
      notFound: `tenant ${tenant} not found`,
    });
    if (values.json) io.out(toJson(body));
    else {
      io.out(
        `claimed ${cell(body.id)} for ${cell(body.tenant)}/${cell(body.agent)} (template ${templateText(body)}, ` +
          `${body.cold ? "cold" : "warm"} in ${cell(body.claim_ms)} ms, isolation ${cell(body.isolation)})\n`,
      );
      for (const [k, v] of Object.entries((body.addresses ?? {}) as Record<string, unknown>))
        io.out(`  ${cell(k)}: ${cell(v, 200)}\n`);
    }
    return EXIT.ok;
  },
};

function endCommand(verb: "release" | "destroy"): Command {
  const release = verb === "release";
  return {
    name: ["agents", verb],
    summary: release
      ? "release a claimed runtime: its tools are removed, the runtime is destroyed"
      : "destroy a runtime at once (an admin may destroy an unclaimed one)",
    help: `Usage: agentowl agents ${verb} RT_ID [-t TENANT] [--json]

${
  release
    ? `Ends the agent's claim: every resource its tools provisioned (addresses, bindings, numbers,
vault entries) is removed, then the process and its directory; the pool refills to min_idle.`
    : `Destroys the runtime: every resource its tools provisioned first, then the process and its
directory, then its token. A destroy cut short by a crash is finished at the next start.`
}

${footer}`,
    options: { ...TENANT, ...JSON_OPTION, ...CONNECTION_OPTIONS },
    maxPositionals: 1,
    async run(args, io) {
      const id = idArg(args);
      const client = clientFor(args.values, io.env);
      const { body } = release
        ? await client.call<Row>(
            "POST",
            apiPath("tenants", await tenantOf(client, args, id, "release"), "agents", id, "release"),
            { notFound: `runtime ${id} not found` },
          )
        : await client.call<Row>("DELETE", runtimePath(args.values, id), { notFound: `runtime ${id} not found` });
      io.out(args.values.json ? toJson(body) : `${release ? "released" : "destroyed"} ${id} (${stateText(body)})\n`);
      return EXIT.ok;
    },
  };
}

const logsCommand: Command = {
  name: ["agents", "logs"],
  summary: "the last lines a runtime wrote to stdout and stderr",
  help: `Usage: agentowl agents logs RT_ID [-t TENANT] [--json]

Prints the runtime's last output lines (the appliance keeps the last 500), each with its time
and stream. The same lines are in the appliance's log, tagged with the runtime's id.

${footer}`,
  options: { ...TENANT, ...JSON_OPTION, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run(args, io) {
    const id = idArg(args);
    const { body } = await clientFor(args.values, io.env).get<{ items: Row[] }>(runtimePath(args.values, id, "logs"), {
      notFound: `runtime ${id} not found`,
    });
    if (args.values.json) io.out(toJson(body.items));
    else
      for (const l of body.items)
        io.out(`${time(l.at)}  ${cell(l.stream).padEnd(6)}  ${safeText(String(l.line ?? ""))}\n`);
    return EXIT.ok;
  },
};

const syncCommand: Command = {
  name: ["agents", "sync"],
  summary: "roll a template's current version onto claimed runtimes",
  help: `Usage: agentowl agents sync RT_ID [-t TENANT] [--json]
       agentowl agents sync -t TENANT --template NAME [--json]

Configures a claimed runtime again with its template's current version (instructions, model,
tools: added ones provisioned, removed ones destroyed), or every claimed runtime of the template
with --template. Each shows the version it now runs and when it synced.

${footer}`,
  options: { ...TENANT, template: { type: "string" }, ...JSON_OPTION, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run(args, io) {
    const template = stringOpt(args.values, "template");
    const id = args.positionals[0];
    if (template !== undefined && id !== undefined) throw new UsageError("give RT_ID or --template NAME, not both");
    const client = clientFor(args.values, io.env);
    let synced: Row[];
    if (template !== undefined) {
      const tenant = stringOpt(args.values, "tenant");
      if (!tenant) throw new UsageError("--template needs -t TENANT");
      const { body } = await client.call<{ items: Row[] }>("POST", apiPath("tenants", tenant, "agents", "sync"), {
        json: { template },
        notFound: `tenant ${tenant} not found`,
      });
      synced = body.items;
    } else {
      const rt = idArg(args);
      const tenant = await tenantOf(client, args, rt, "sync");
      synced = [
        (
          await client.call<Row>("POST", apiPath("tenants", tenant, "agents", rt, "sync"), {
            notFound: `runtime ${rt} not found`,
          })
        ).body,
      ];
    }
    if (args.values.json) io.out(toJson(synced));
    else if (!synced.length) io.out(`no claimed runtime of template ${template}\n`);
    else
      for (const r of synced)
        io.out(`synced ${cell(r.id)} (${cell(r.agent)}) to ${templateText(r)} at ${time(r.synced_at)}\n`);
    return EXIT.ok;
  },
};

const poolCommand: Command = {
  name: ["agents", "pool"],
  summary: "the pool: min_idle, isolation, runtimes by state; --min-idle N to resize",
  help: `Usage: agentowl agents pool [--min-idle N] [--json]

Shows the pool: how many warm runtimes it keeps ready (min_idle), the isolation in force (and,
when it is 'process', why no sandbox works here), what a claim does when none is ready, and how
many runtimes are in each state. --min-idle N sets how many to keep warm (0 to 1000); the pool
starts or retires runtimes to match. Needs an admin token.

${footer}`,
  options: { "min-idle": { type: "string" }, ...JSON_OPTION, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const raw = stringOpt(values, "min-idle");
    const client = clientFor(values, io.env);
    let body: Row;
    if (raw !== undefined) {
      if (!/^\d+$/.test(raw) || Number(raw) > 1000)
        throw new UsageError(`--min-idle takes a whole number from 0 to 1000, not '${raw}'`);
      body = (await client.call<Row>("PUT", apiPath("agents", "pool"), { json: { min_idle: Number(raw) } })).body;
    } else body = (await client.get<Row>(apiPath("agents", "pool"))).body;
    io.out(values.json ? toJson(body) : poolText(body));
    return EXIT.ok;
  },
};

const toolsCommand: Command = {
  name: ["agents", "tools"],
  summary: "the tool plugins a template may name",
  help: `Usage: agentowl agents tools [--json]

Lists the tool plugins (email, webhook, http, sms, ...): what each does and how it may be
provisioned (pool: by the appliance; user: with credentials given at claim time). --json adds
each plugin's parameters as the model sees them.

${footer}`,
  options: { ...JSON_OPTION, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const { body } = await clientFor(values, io.env).get<{ items: Row[] }>(apiPath("tools"));
    io.out(
      values.json
        ? toJson(body.items)
        : renderTable(
            ["PLUGIN", "PROVISIONING", "DESCRIPTION"],
            body.items.map((p) => [cell(p.id), cell(p.provisioning), cell(p.description, 100)]),
          ),
    );
    return EXIT.ok;
  },
};

export const AGENT_COMMANDS: readonly Command[] = [
  lsCommand,
  showCommand,
  claimCommand,
  endCommand("release"),
  endCommand("destroy"),
  logsCommand,
  syncCommand,
  poolCommand,
  toolsCommand,
];
