import { type Clock, systemClock } from "../core/clock.ts";
import { parseDuration } from "../config/index.ts";
import {
  API_EXIT_HELP,
  type ApiClient,
  apiPath,
  clientFor,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  type Page,
  pause,
} from "./client.ts";
import { CHANNELS, EVENT_TYPES } from "../events/envelope.ts";
import { DELIVERY_STATES } from "../store/schema/events.ts";
import { choiceOpt, type Command, type CommandArgs, type CommandIO, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { cell, formatRow, listShowingProgress, renderTable, time, toJson, toYaml } from "./output.ts";

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
  return [
    cell(e.id),
    time(e.received_at),
    cell(e.type),
    cell(e.tenant),
    cell(e.agent),
    cell(e.channel),
    cell(pick(data, "subject", "text", "event", "type"), 50),
  ];
}

const DELIVERY_COLUMNS = ["ID", "EVENT", "TENANT", "TARGET", "STATE", "ATTEMPTS", "LAST", "UPDATED"];
/** `deliveries ls` also says what each unfinished delivery waits for (the API sends it there). */
const DELIVERY_LS_COLUMNS = [...DELIVERY_COLUMNS.slice(0, 5), "WAITING FOR", ...DELIVERY_COLUMNS.slice(5)];

/** A delivery's `waiting_for`, in words: what it waits for and until when. */
export function waitingText(w: unknown): string {
  if (!w || typeof w !== "object") return "-";
  const { reason, until, approval_id } = w as Row;
  const at = until ? time(until) : null;
  switch (reason) {
    case "approval":
      return `approval ${cell(approval_id)}${at ? ` (expires ${at})` : ""}`;
    case "circuit_open":
      return at ? `circuit open until ${at}` : "circuit open";
    case "endpoint_busy":
      return "endpoint busy";
    case "retry":
      return at ? `retry at ${at}` : "retry";
    case "attempt_in_progress":
      return "attempt in progress";
    case "worker":
      return "a free worker";
    default:
      return cell(reason);
  }
}
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
export function pointInTime(raw: string | undefined, flag: string, clock: Clock = systemClock): string | undefined {
  if (raw === undefined) return undefined;
  const ago = parseDuration(raw);
  if (ago !== null) return new Date(clock.now() - ago).toISOString();
  const ms = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(ms))
    throw new UsageError(
      `${flag} takes an ISO 8601 time (2026-11-21T14:00:00Z) or a duration ago (15m, 24h), not '${raw}'`,
    );
  return new Date(ms).toISOString();
}

function limitOf(values: CommandArgs["values"]): number | undefined {
  if (values.all) return undefined;
  const limit = Number(stringOpt(values, "limit") ?? 50);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError("--limit takes a whole number from 1");
  return limit;
}

/** Newest first: `limit` rows (or every row with --all), page after page. */
export async function listRows(
  client: ApiClient,
  path: string,
  query: Record<string, string | undefined>,
  values: CommandArgs["values"],
  io: CommandIO,
  what: string,
): Promise<Row[]> {
  const max = limitOf(values);
  return listShowingProgress<Row>(client, path, io, `listing ${what}`, values, {
    query,
    max,
    pageSize: Math.min(max ?? 500, 500),
  });
}

export const LIST_OPTIONS = {
  json: { type: "boolean" },
  limit: { type: "string" },
  all: { type: "boolean" },
  ...CONNECTION_OPTIONS,
} as const;

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
    const filters = {
      tenant: stringOpt(values, "tenant"),
      type: choiceOpt(values, "type", EVENT_TYPES),
      channel: choiceOpt(values, "channel", CHANNELS),
    };
    const range = {
      since: pointInTime(stringOpt(values, "since"), "--since"),
      until: pointInTime(stringOpt(values, "until"), "--until"),
    };
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
async function follow(
  client: ApiClient,
  filters: Record<string, string | undefined>,
  since: string | undefined,
  limit: number,
  values: CommandArgs["values"],
  io: CommandIO,
): Promise<number> {
  const signal = io.untilInterrupted?.() ?? new AbortController().signal;
  const print = (events: Row[]): void => {
    for (const e of events)
      io.out(values.json ? `${JSON.stringify(e)}\n` : `${formatRow(eventRow(e), FOLLOW_WIDTHS)}\n`);
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
    const { body } = await clientFor(values, io.env).get<Row>(apiPath("events", id), {
      notFound: `event ${id} not found`,
    });
    if (values.json) {
      io.out(toJson(body));
      return EXIT.ok;
    }
    const { deliveries, trace, ...envelope } = body;
    const deliveryRows = Array.isArray(deliveries) ? (deliveries as Row[]) : [];
    const spans = Array.isArray(trace) ? (trace as Row[]) : [];
    io.out(toYaml(envelope));
    io.out(
      `\nDELIVERIES\n${deliveryRows.length ? renderTable(DELIVERY_COLUMNS, deliveryRows.map(deliveryRow)) : "none\n"}`,
    );
    io.out(
      `\nTRACE\n${
        spans.length
          ? renderTable(
              ["STEP", "START", "DURATION", "OUTCOME"],
              spans.map((s) => [
                cell(s.name),
                cell(pick(s, "start", "started_at")),
                `${cell(pick(s, "duration_ms", "duration"))} ms`,
                cell(pick(s, "outcome", "status")),
              ]),
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
  help: `Usage: agentowl deliveries ls [-t TENANT] [--event ID] [--endpoint NAME] [--state STATE] [--limit N | --all] [--json]

Lists deliveries (one per event and target, and one per replay) newest first: the first
--limit (default 50), or --all of them, as a table or, with --json, one JSON array. STATE:
pending, awaiting_approval, delivering, delivered, retrying (failed so far, will try again),
dead (gave up: the dead letters), denied, quarantined, discarded. WAITING FOR says what an
unfinished delivery waits for: an approval, the endpoint's open circuit (until when), a busy
endpoint, its next retry (when), an attempt in progress, or a free worker.

${footer}`,
  options: {
    tenant: { type: "string", short: "t" },
    event: { type: "string" },
    endpoint: { type: "string" },
    state: { type: "string" },
    ...LIST_OPTIONS,
  },
  async run({ values }, io) {
    const query = {
      tenant: stringOpt(values, "tenant"),
      event: stringOpt(values, "event"),
      endpoint: stringOpt(values, "endpoint"),
      state: choiceOpt(values, "state", DELIVERY_STATES),
    };
    const items = await listRows(clientFor(values, io.env), apiPath("deliveries"), query, values, io, "deliveries");
    if (values.json) io.out(toJson(items));
    else if (!items.length) io.out("no deliveries\n");
    else
      io.out(
        renderTable(
          DELIVERY_LS_COLUMNS,
          items.map((d) => {
            const row = deliveryRow(d);
            row.splice(5, 0, waitingText(d.waiting_for));
            return row;
          }),
        ),
      );
    return EXIT.ok;
  },
};

const ATTEMPT_COLUMNS = ["#", "STARTED", "LATENCY", "STATUS", "ERROR"];

const deliveriesShow: Command = {
  name: ["deliveries", "show"],
  summary: "show one delivery: its state, policy decision and every attempt",
  help: `Usage: agentowl deliveries show DLV_ID [--json]

Prints the delivery as YAML (state, route, the policy decision and the version that made it,
the approval, the delivery it replays), then every attempt: when, how long, the status or the
error class (dns, connect, tls, timeout, http, egress) and error.

${footer}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const id = idArg(positionals, "delivery", "dlv");
    const { body } = await clientFor(values, io.env).get<Row>(apiPath("deliveries", id), {
      notFound: `delivery ${id} not found`,
    });
    if (values.json) {
      io.out(toJson(body));
      return EXIT.ok;
    }
    const { attempt_log, trace: _trace, ...delivery } = body;
    const attempts = Array.isArray(attempt_log) ? (attempt_log as Row[]) : [];
    io.out(toYaml(delivery));
    io.out(
      `\nATTEMPTS\n${
        attempts.length
          ? renderTable(
              ATTEMPT_COLUMNS,
              attempts.map((a) => [
                cell(a.attempt),
                time(a.started_at),
                `${cell(a.latency_ms)} ms`,
                cell(a.status ?? a.error_class),
                cell(a.error ?? "-", 60),
              ]),
            )
          : "none\n"
      }`,
    );
    return EXIT.ok;
  },
};

function idArg(positionals: string[], what: string, prefix: string): string {
  const id = positionals[0];
  if (!id) throw new UsageError(`missing the ${what} id (${prefix}_...)`);
  return id;
}

const deliveryAction = (verb: "retry" | "discard", summary: string, text: string): Command => ({
  name: ["deliveries", verb],
  summary,
  help: `Usage: agentowl deliveries ${verb} DLV_ID [--json]

${text} The action and who asked for it go to the audit log. Exit 4 when the delivery is in a
state that does not allow it. Needs write access to its tenant.

${footer}`,
  options: { json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const id = idArg(positionals, "delivery", "dlv");
    const { body } = await clientFor(values, io.env).call<Row>("POST", `${apiPath("deliveries", id)}/${verb}`, {
      notFound: `delivery ${id} not found`,
    });
    io.out(
      values.json
        ? toJson(body)
        : `${String(body.id)}: ${String(body.state)} (${String(body.endpoint)}, ${String(body.attempts)} attempt(s) so far)\n`,
    );
    return EXIT.ok;
  },
});

const deliveriesRetry = deliveryAction(
  "retry",
  "try a dead delivery again, under the same webhook-id",
  "Takes a dead delivery (a dead letter) back into delivery: the same webhook-id, so the\n" +
    "receiver can still de-duplicate, and a fresh max_attempts / max_age budget.",
);
const deliveriesDiscard = deliveryAction(
  "discard",
  "give up on a dead or retrying delivery",
  "Gives up on a dead delivery, or one still being retried: it stays on record as discarded\nand is never tried again.",
);

const eventsReplay: Command = {
  name: ["events", "replay"],
  summary: "deliver an event again: to every target its routes give now, or to one endpoint",
  help: `Usage: agentowl events replay EVT_ID [--endpoint NAME] [--json]

Replays an event: one new delivery per target its tenant's routes give now (an event that was
unrouted gets the routes added since), or to --endpoint NAME only. Each is decided by policy
again, has its own webhook-id and carries an agentowl-replay-of header naming the delivery it
repeats: never a silent duplicate. Exit 4 when no route matches (name an --endpoint).

${footer}`,
  options: { endpoint: { type: "string" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const id = idArg(positionals, "event", "evt");
    const endpoint = stringOpt(values, "endpoint");
    const { body } = await clientFor(values, io.env).call<Row>("POST", `${apiPath("events", id)}/replay`, {
      json: endpoint ? { endpoint } : {},
      notFound: `event ${id} not found`,
    });
    const made = (body.deliveries ?? []) as Row[];
    if (values.json) io.out(toJson(body));
    else
      io.out(
        renderTable(
          ["DELIVERY", "TARGET", "REPLAYS", "STATE"],
          made.map((d) => [cell(d.id), cell(d.endpoint), cell(d.replay_of ?? "-"), cell(d.state)]),
        ),
      );
    return EXIT.ok;
  },
};

/** `-t TENANT NAME`: the endpoint a command is about. */
function endpointArgs(values: CommandArgs["values"], positionals: string[]): { tenant: string; name: string } {
  const name = positionals[0];
  if (!name) throw new UsageError("missing the endpoint NAME");
  const tenant = stringOpt(values, "tenant");
  if (!tenant) throw new UsageError("missing -t TENANT");
  return { tenant, name };
}

const endpointsStatus: Command = {
  name: ["endpoints", "status"],
  summary: "an endpoint's health: circuit breaker, deliveries in flight and by state",
  help: `Usage: agentowl endpoints status -t TENANT NAME [--json]

Shows the endpoint's circuit breaker (closed, open until a time, half_open while a probe is
out; consecutive failures), the deliveries in flight to it now, and its deliveries by state.

${footer}`,
  options: { tenant: { type: "string", short: "t" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const { tenant, name } = endpointArgs(values, positionals);
    const { body } = await clientFor(values, io.env).get<Row>(
      `${apiPath("tenants", tenant, "endpoints", name)}/status`,
      { notFound: `endpoint ${tenant}/${name} not found` },
    );
    io.out(values.json ? toJson(body) : toYaml(body));
    return EXIT.ok;
  },
};

const endpointsResetCircuit: Command = {
  name: ["endpoints", "reset-circuit"],
  summary: "close an endpoint's circuit breaker and send its waiting deliveries now",
  help: `Usage: agentowl endpoints reset-circuit -t TENANT NAME [--json]

Closes the endpoint's circuit breaker (an open circuit otherwise waits out its cooldown before
a probe) and sends every delivery to it that waits for a later retry, now. Changing the
endpoint's URL does the same by itself. Audited; needs write access to the tenant.

${footer}`,
  options: { tenant: { type: "string", short: "t" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  maxPositionals: 1,
  async run({ values, positionals }, io) {
    const { tenant, name } = endpointArgs(values, positionals);
    const { body } = await clientFor(values, io.env).call<Row>(
      "POST",
      `${apiPath("tenants", tenant, "endpoints", name)}/reset-circuit`,
      { json: {}, notFound: `endpoint ${tenant}/${name} not found` },
    );
    io.out(
      values.json
        ? toJson(body)
        : `${tenant}/${name}: circuit ${body.was_open ? "was open, now closed" : "closed"}; ${cell(body.deliveries_sent_now)} waiting deliveries sent now\n`,
    );
    return EXIT.ok;
  },
};

export const EVENT_COMMANDS: readonly Command[] = [
  eventsLs,
  eventsShow,
  eventsReplay,
  deliveriesLs,
  deliveriesShow,
  deliveriesRetry,
  deliveriesDiscard,
  endpointsStatus,
  endpointsResetCircuit,
];
