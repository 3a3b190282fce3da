import { Elysia } from "elysia";
import { LogLine, LogsPage } from "../../web/index.ts";
import { isAdmin } from "../api/auth.ts";
import { LOG_LEVELS } from "../core/log.ts";
import { AppError } from "../errors/index.ts";
import { sseStream } from "../server/sse.ts";
import { SECURITY_HEADERS } from "./headers.ts";
import { type ConsoleKit, NAME, queryString, type Visitor } from "./kit.ts";

/** Bun.serve ends a connection idle for 10 s: a comment line keeps the stream open. */
const PING_MS = 5_000;
/** Lines a slow client may fall behind before it is cut off (htmx reconnects it), as /v1/logs/tail. */
const MAX_BACKLOG = 10_000;

type Level = (typeof LOG_LEVELS)[number];

/**
 * /console/logs (docs/console.md#logs), an admin's as /v1/logs/tail is: the live log through
 * the same tap, filtered by lowest level and by tenant (a line's `tenant` field). Each line goes
 * out as an SSE `line` message holding an escaped <li>, which htmx's SSE extension appends. The
 * tap's lines were redacted by the logger before it published them.
 */
export function logsRoutes(kit: ConsoleKit) {
  const { signedIn, refused, html, chromeFor, visibleTenantList } = kit;
  const notAdmin = (v: Visitor) => refused(v, "Only an admin reads the appliance's log.");

  const filtersOf = (request: Request) => {
    const q = new URL(request.url).searchParams;
    const level = q.get("level") || "info";
    const tenant = q.get("tenant") ?? "";
    if (!(LOG_LEVELS as readonly string[]).includes(level))
      throw new AppError("invalid_input", `level must be one of ${LOG_LEVELS.join(", ")}`);
    if (tenant && !NAME.test(tenant)) throw new AppError("invalid_input", "tenant must be a tenant's name");
    return { level: level as Level, tenant };
  };

  return new Elysia({ name: "console-logs", normalize: false, detail: { hide: true } })
    .get(
      "/console/logs",
      signedIn(async (v, { request }) => {
        if (!isAdmin(v.principal)) return notAdmin(v);
        const filters = filtersOf(request);
        return html(
          LogsPage({
            chrome: chromeFor(v, "logs"),
            view: {
              filters,
              levels: LOG_LEVELS,
              tenants: await visibleTenantList(v),
              stream: `/console/logs/stream${queryString(filters)}`,
            },
          }),
        );
      }),
    )
    .get(
      "/console/logs/stream",
      signedIn(async (v, c: { request: Request; server?: { timeout?(r: Request, s: number): void } | null }) => {
        const { request } = c;
        if (!isAdmin(v.principal)) return notAdmin(v);
        const filters = filtersOf(request);
        const tap = kit.deps.logTap;
        if (!tap) throw new AppError("unavailable", "this server has no log stream");
        const threshold = LOG_LEVELS.indexOf(filters.level);
        c.server?.timeout?.(request, 0);
        const stream = sseStream(request, {
          pingMs: PING_MS,
          maxBacklog: MAX_BACKLOG,
          open: (send, close) =>
            tap.subscribe((line) => {
              let parsed: { level?: unknown; tenant?: unknown };
              try {
                parsed = JSON.parse(line);
              } catch {
                return;
              }
              const level = String(parsed.level) as Level;
              if (LOG_LEVELS.indexOf(level) < threshold) return;
              if (filters.tenant && parsed.tenant !== filters.tenant) return;
              // A JSON line has no line break, and the rendered <li> none either: one data line.
              void Promise.resolve(LogLine({ level, line }).toString()).then((li) =>
                send(`event: line\ndata: ${li}\n\n`),
              );
            }, close),
        });
        return new Response(stream, {
          headers: {
            ...SECURITY_HEADERS,
            "content-type": "text/event-stream",
            "cache-control": "no-store",
          },
        });
      }),
    );
}
