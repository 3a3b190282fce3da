import { LOG_LEVELS, type LogLevel } from "../core/log.ts";
import { API_EXIT_HELP, clientFor, CONNECTION_HELP, CONNECTION_OPTIONS, pause } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { safeText } from "./output.ts";

/**
 * `agentowl logs tail`: the server's log lines, live, from GET /v1/logs/tail (Server-Sent Events,
 * one JSON log line per event). A dropped stream is reconnected with backoff, resuming after the
 * last event id seen (Last-Event-ID), until Ctrl-C.
 */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15_000;

export interface ServerSentEvent {
  event: string;
  data: string;
  id?: string;
  retry?: number;
}

/** The events of a text/event-stream body (WHATWG HTML §9.2.6): fields, comments, multi-line data. */
export async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  let event = "";
  let id: string | undefined;
  let retry: number | undefined;
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    const lines = buffer.split(/\r\n|\r|\n/);
    // A lone \r at the end may be half of a \r\n still in flight.
    buffer = lines.pop()!;
    for (const line of lines) {
      if (line === "") {
        if (data.length)
          yield {
            event: event || "message",
            data: data.join("\n"),
            ...(id !== undefined ? { id } : {}),
            ...(retry !== undefined ? { retry } : {}),
          };
        data = [];
        event = "";
        retry = undefined;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
      else if (field === "id" && !value.includes("\0")) id = value;
      else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
    }
  }
}

/** A JSON log line for people: `time level msg key=value …`, control characters neutralized. */
export function formatLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line);
    if (!entry || typeof entry !== "object" || Array.isArray(entry)) return safeText(line);
  } catch {
    return safeText(line);
  }
  const { time, level, msg, ...fields } = entry;
  const value = (v: unknown): string =>
    typeof v === "string" ? (/^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)) : JSON.stringify(v);
  const parts = [String(time ?? "-"), String(level ?? "-").padEnd(5), String(msg ?? "")];
  for (const [k, v] of Object.entries(fields)) parts.push(`${k}=${value(v)}`);
  return safeText(parts.join(" "));
}

const levelOf = (line: string): LogLevel | undefined => {
  try {
    return (JSON.parse(line) as { level?: LogLevel }).level;
  } catch {
    return undefined;
  }
};

export const logsTailCommand: Command = {
  name: ["logs", "tail"],
  summary: "print the server's log lines as they are written (until Ctrl-C)",
  help: `Usage: agentowl logs tail [--level debug|info|warn|error] [--json]

Streams the server's log lines as they are written, from GET /v1/logs/tail (Server-Sent Events),
until Ctrl-C (exit 0). Each line is printed as 'time level msg key=value ...', or as the server's
JSON with --json. --level shows that level and above. If the stream drops (the server restarts),
it reconnects with backoff. The lines are redacted by the server: secrets never reach it.
Needs an admin token.

${CONNECTION_HELP}

${API_EXIT_HELP}`,
  options: { level: { type: "string" }, json: { type: "boolean" }, ...CONNECTION_OPTIONS },
  async run({ values }, io) {
    const level = stringOpt(values, "level");
    if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level))
      throw new UsageError(`--level takes one of ${LOG_LEVELS.join(", ")}, not '${level}'`);
    const threshold = LOG_LEVELS.indexOf((level ?? "debug") as LogLevel);
    const client = clientFor(values, io.env);
    const signal = io.untilInterrupted?.() ?? new AbortController().signal;
    let lastId: string | undefined;
    let firstRetry = FIRST_RETRY_MS;
    let delay = firstRetry;
    let dropped = false;
    while (!signal.aborted) {
      let why: string;
      try {
        const res = await client.send("GET", "/v1/logs/tail", {
          query: { level },
          accept: "text/event-stream",
          headers: lastId === undefined ? {} : { "last-event-id": lastId },
          timeoutMs: 0,
          signal,
        });
        if (!res.body) throw new CommandFailure("the server sent no stream", EXIT.failed, [], true);
        if (dropped) io.err("agentowl logs tail: reconnected\n");
        dropped = false;
        for await (const ev of serverSentEvents(res.body)) {
          if (ev.id !== undefined) lastId = ev.id;
          // The stream works again: the next drop starts the backoff afresh (at the server's `retry:`).
          if (ev.retry !== undefined) firstRetry = ev.retry;
          delay = firstRetry;
          const lineLevel = levelOf(ev.data);
          if (lineLevel && LOG_LEVELS.indexOf(lineLevel) < threshold) continue;
          io.out(`${values.json ? ev.data : formatLogLine(ev.data)}\n`);
        }
        why = "the server closed the stream";
      } catch (e) {
        if (signal.aborted) break;
        if (e instanceof CommandFailure && !e.transient) throw e;
        const code = (e as { code?: unknown }).code;
        why =
          e instanceof CommandFailure
            ? e.message
            : `the stream broke (${typeof code === "string" ? code : (e as Error).message})`;
      }
      if (signal.aborted) break;
      dropped = true;
      io.err(`agentowl logs tail: ${why}; reconnecting in ${(delay / 1000).toFixed(1)} s\n`);
      await pause(delay, signal);
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
    return EXIT.ok;
  },
};
