import { parseDuration } from "../config/index.ts";
import { API_EXIT_HELP, type ApiClient, apiPath, clientFor, CONNECTION_HELP, CONNECTION_OPTIONS, type Page, pause } from "./client.ts";
import { type Command, type CommandArgs, type CommandIO, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { cell, formatRow, progressFor, renderTable, time, toJson, toYaml } from "./output.ts";

/**
 * `agentowl events ls|show` and `agentowl deliveries ls` over GET /v1/events and
 * /v1/deliveries. Lists come newest first; `--follow` prints the latest page oldest first, then
 * asks every second for the events after the last one it printed (`?after=<id>`), until Ctrl-C.
 */
export type Row = Record<string, unknown>;

const FOLLOW_EVERY_MS = 1000;
const FOLLOW_PAGE = 100;
const MAX_BACKOFF_MS = 15_000;
const footer = `${CONNECTION_HELP}\n\n${API_EXIT_HELP}`;

/** The first of `keys` that the row has: the delivery and trace shapes name some fields two ways. */
const pick = (r: Row, ...keys: string[]): unknown => r[keys.find((k) => r[k] !== undefined && r[k] !== null) ?? ""];

const EVENT_COLUMNS = ["ID", "RECEIVED", "TYPE", "TENANT", "AGENT", "CHANNEL", "SUMMARY"];
/** Widths for --follow, which cannot measure rows it has not seen yet (an event id is 30 characters). */
const FOLLOW_WIDTHS = [30, 20, 20, 12, 12, 8];

function eventRow(e: Row): string[] {
  const data = (e.data ?? {}) as Row;
  return [cell(e.id), time(e.received_at), cell(e.type), cell(e.tenant), cell(e.agent), cell(e.channel), cell(pick(data, "subject", "text", "event", "type"), 50)];
}

const DELIVERY_COLUMNS = ["ID", "EVENT", "TENANT", "TARGET", "STATE", "ATTEMPTS", "LAST", "UPDATED"];
const deliveryRow = (d: Row): string[] => [
  cell(d.id),
  cell(pick(d, "event", "event_id")),
  cell(d.tenant),
  cell(pick(d, "endpoint", "target")),
  cell(d.state),
  cell(d.attempts),
  cell(pick(d, "last_error", "last_status"), 40),
  time(pick(d, "updated_at", "created_at")),
];

/** `--since 2026-11-21T14:00:00Z` or `--since 15m` (that long ago), as ISO 8601. */
export function pointInTime(raw: string | undefined, flag: string, now = Date.now()): string | undefined {
  if (raw === undefined) return undefined;
  const ago = parseDuration(raw);
  if (ago !== null) return new Date(now - ago).toISOString();
  const ms = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(ms)) throw new UsageError(`${flag} takes an ISO 8601 time (2026-11-21T14:00:00Z) or a duration ago (15m, 24h), not '${raw}'`);
  return new Date(ms).toISOString();
}

function limitOf(values: CommandArgs["values"]): number | undefined {
  if (values.all) return undefined;
  const limit = Number(stringOpt(values, "limit") ?? 50);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError("--limit takes a whole number from 1");
  return limit;
}

/** Newest first: `limit` rows (or every row with --all), page after page. */
export async function listRows(client: ApiClient, path: string, query: Record<string, string | undefined>, values: CommandArgs["values"], io: CommandIO, what: string): Promise<Row[]> {
  const progress = progressFor(io, `listing ${what}`, values);
  try {
    const max = limitOf(values);
    return await client.listAll<Row>(path, { query, max, pageSize: Math.min(max ?? 500, 500), onPage: (n, more) => more && progress.update(n, max) });
  } finally {
    progress.done();
  }
}

export const LIST_OPTIONS = { json: { type: "boolean" }, limit: { type: "string" }, all: { type: "boolean" }, ...CONNECTION_OPTIONS } as const;

const eventsLs: Command = {
  name: ["events", "ls"],
  summary: "list events, newest first; --follow for new ones as they come",
  help: `Usage: agentowl events ls [-t TENANT] [--type TYPE] [--channel CHANNEL] [--since TIME] [--until TIME]
                          [--limit N | --all] [--follow] [--json]

Lists events, newest first: the latest --limit (default 50), or --all of them. TIME is ISO 8601
(2026-11-21T14:00:00Z) or a duration ago (15m, 24h, 7d).

--follow prints the latest events oldest first, then each new event as it arrives (checked every
second) until Ctrl-C, which exits 0. With --json, --follow prints one JSON event per line;
without --follow, --json prints one JSON array.

${footer}`,
  options: {
    tenant: { type: "string", short: "t" },
    type: { type: "string" },
    channel: { type: "string" },
    since: { type: "string" },
    until: { type: "string" },
    follow: { type: "boolean" },
    ...LIST_OPTIONS,
  },
  async run({ values }, io) {
    const filters = { tenant: stringOpt(values, "tenant"), type: stringOpt(values, "type"), channel: stringOpt(values, "channel") };
    const range = { since: pointInTime(stringOpt(values, "since"), "--since"), until: pointInTime(stringOpt(values, "until"), "--until") };
    const client = clientFor(values, io.env);
    if (values.follow) {
      if (range.until) throw new UsageError("--until cannot be used with --follow");
      if (values.all) throw new UsageError("--all cannot be used with --follow");
      return follow(client, filters, range.since, limitOf(values)!, values, io);
    }
    const items = await listRows(client, apiPath("events"), { ...filters, ...range }, values, io, "events");
    if (values.json) io.out(toJson(items));
    else if (!items.length) io.out("no events\n");
    else io.out(renderTable(EVENT_COLUMNS, items.map(eventRow)));
    return EXIT.ok;
  },
};

/** The latest page, oldest first, then every event after the last one printed, until Ctrl-C. */
async function follow(client: ApiClient, filters: Record<string, string | undefined>, since: string | undefined, limit: number, values: CommandArgs["values"], io: CommandIO): Promise<number> {
  const signal = io.untilInterrupted?.() ?? new AbortController().signal;
  const print = (events: Row[]): void => {
    for (const e of events) io.out(values.json ? `${JSON.stringify(e)}\n` : `${formatRow(eventRow(e), FOLLOW_WIDTHS)}\n`);
  };
  if (!values.json) io.out(`${formatRow(EVENT_COLUMNS, FOLLOW_WIDTHS)}\n`);
  let after: string | undefined;
  let failures = 0;
  try {
    const first = await client.get<Page<Row>>(apiPath("events"), { query: { ...filters, since, limit }, signal });
    print([...first.body.items].reverse());
    after = first.body.items[0]?.id as string | undefined;
    while (!signal.aborted) {
      let more = false;
      try {
        // Until there is a first event to follow from, ask for the newest ones as `ls` does.
        const query = after ? { ...filters, after, limit: FOLLOW_PAGE } : { ...filters, since, limit: FOLLOW_PAGE };
        const { body } = await client.get<Page<Row>>(apiPath("events"), { query, signal });
        const fresh = after ? body.items : [...body.items].reverse();
        print(fresh);
        if (fresh.length) after = fresh.at(-1)!.id as string;
        more = after !== undefined && (body.items.length >= FOLLOW_PAGE || Boolean(body.next_cursor));
        failures = 0;
      } catch (e) {
        if (signal.aborted) break;
        // The server restarting or the network blinking: keep following; anything else ends it.
        if (!(e instanceof CommandFailure) || !e.transient) throw e;
        if (++failures === 1) io.err(`agentowl events ls: ${e.message}; retrying\n`);
        await pause(Math.min(FOLLOW_EVERY_MS * 2 ** failures, MAX_BACKOFF_MS), signal);
        continue;
      }
      if (!more) await pause(FOLLOW_EVERY_MS, signal);
    }
  } catch (e) {
    if (signal.aborted) return EXIT.ok;
    throw e;
  }
  return EXIT.ok;
}

const eventsShow: Command = {
  name: ["events", "show"],
  summary: "show one event: its envelope, deliveries and trace",
  help: `Usage: agentowl events show ID [--json]

Prints the event's canonical envelope as YAML, then its deliveries and its trace (each step
with its start, duration and outcome). --json prints the API's answer as it is.

${footer}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const id = positionals[0];
    if (!id) throw new UsageError("missing ID (see 'agentowl events ls')");
    const { body } = await clientFor(values, io.env).get<Row>(apiPath("events", id), { notFound: `event ${id} not found` });
    if (values.json) {
      io.out(toJson(body));
      return EXIT.ok;
    }
    const { deliveries, trace, ...envelope } = body;
    const deliveryRows = Array.isArray(deliveries) ? (deliveries as Row[]) : [];
    const spans = Array.isArray(trace) ? (trace as Row[]) : [];
    io.out(toYaml(envelope));
    io.out(`\nDELIVERIES\n${deliveryRows.length ? renderTable(DELIVERY_COLUMNS, deliveryRows.map(deliveryRow)) : "none\n"}`);
    io.out(
      `\nTRACE\n${
        spans.length
          ? renderTable(
              ["STEP", "START", "DURATION", "OUTCOME"],
              spans.map((s) => [cell(s.name), cell(pick(s, "start", "started_at")), `${cell(pick(s, "duration_ms", "duration"))} ms`, cell(pick(s, "outcome", "status"))]),
            )
          : "none\n"
      }`,
    );
    return EXIT.ok;
  },
};

const deliveriesLs: Command = {
  name: ["deliveries", "ls"],
  summary: "list deliveries (one per event and target) with their state",
  help: `Usage: agentowl deliveries ls [-t TENANT] [--event ID] [--state STATE] [--limit N | --all] [--json]

Lists deliveries (one per event and target) newest first: the first --limit (default
50), or --all of them, as a table or, with --json, one JSON array. STATE: pending, delivering,
delivered, failed, dead.

${footer}`,
  options: { tenant: { type: "string", short: "t" }, event: { type: "string" }, state: { type: "string" }, ...LIST_OPTIONS },
  async run({ values }, io) {
    const query = { tenant: stringOpt(values, "tenant"), event: stringOpt(values, "event"), state: stringOpt(values, "state") };
    const items = await listRows(clientFor(values, io.env), apiPath("deliveries"), query, values, io, "deliveries");
    if (values.json) io.out(toJson(items));
    else if (!items.length) io.out("no deliveries\n");
    else io.out(renderTable(DELIVERY_COLUMNS, items.map(deliveryRow)));
    return EXIT.ok;
  },
};

export const EVENT_COMMANDS: readonly Command[] = [eventsLs, eventsShow, deliveriesLs];
