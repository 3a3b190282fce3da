import { Elysia } from "elysia";
import type { Clock } from "../core/clock.ts";
import { isId } from "../core/ids.ts";
import { LOG_LEVELS, type LogTap } from "../core/log.ts";
import { AppError } from "../errors/index.ts";
import { sseStream } from "../server/sse.ts";
import type { EventStore, TokenStore } from "../store/index.ts";
import { presentDelivery, timeline } from "./deliveries.ts";
import { canAccess, requireAdmin, tenantsFor } from "./auth.ts";
import { authenticated, pageOf, readPage } from "./http.ts";

function time(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t))
    throw new AppError("invalid_input", `${name} must be an ISO 8601 time, e.g. 2026-11-21T14:02:11Z`);
  return t;
}

const SSE_KEEPALIVE_MS = 15_000;
/** Lines a slow log-tail client may fall behind before it is cut off (it can reconnect). */
const SSE_MAX_BACKLOG = 10_000;

/** /v1/events and /v1/logs/tail. */
export function eventRoutes(events: EventStore, tokens: TokenStore, clock: Clock, logTap: LogTap | null) {
  return new Elysia({ normalize: false })
    .use(authenticated(tokens, clock))
    .get("/events", async ({ principal, query }) => {
      const q = query as Record<string, string | undefined>;
      const tenants = tenantsFor(principal, q.tenant);
      const filters = {
        tenants,
        type: q.type,
        channel: q.channel,
        since: time("since", q.since),
        until: time("until", q.until),
      };
      if (q.after !== undefined) {
        // Following: everything after an id the client has seen, oldest first.
        if (!isId(q.after, "evt")) throw new AppError("invalid_input", "after must be an event id (evt_…)");
        const page = readPage({ limit: q.limit });
        const rows = await events.list({ ...filters, after: q.after, limit: page.limit });
        return { items: rows.map((r) => r.envelope), next_cursor: null };
      }
      const page = readPage(q);
      const rows = await events.list({ ...filters, before: page.after, limit: page.limit + 1 });
      return pageOf(
        rows.map((r) => r.envelope),
        page.limit,
        (e) => e.id,
      );
    })
    .get("/events/:id", async ({ principal, params }) => {
      const event = isId(params.id, "evt") ? await events.get(params.id) : null;
      if (!event || !canAccess(principal, event.tenant, "read")) throw new AppError("not_found", "not found");
      const dels = await events.deliveries({ eventId: params.id, limit: 1000 });
      return {
        ...event.envelope,
        routing: await events.getRouting(params.id),
        deliveries: dels.map((d) => presentDelivery(d)),
        trace: timeline(event.trace, [...dels].reverse()),
      };
    })
    .get("/logs/tail", ({ principal, query, request }) => {
      requireAdmin(principal);
      if (!logTap) throw new AppError("unavailable", "this server has no log stream");
      const min = (query as Record<string, string | undefined>).level;
      if (min !== undefined && !(LOG_LEVELS as readonly string[]).includes(min))
        throw new AppError("invalid_input", `level must be one of ${LOG_LEVELS.join(", ")}`);
      const threshold = min ? LOG_LEVELS.indexOf(min as (typeof LOG_LEVELS)[number]) : 0;
      const stream = sseStream(request, {
        pingMs: SSE_KEEPALIVE_MS,
        ping: "keep-alive",
        maxBacklog: SSE_MAX_BACKLOG,
        open: (send, close) =>
          logTap.subscribe((line) => {
            const level = /"level":"(\w+)"/.exec(line)?.[1] as (typeof LOG_LEVELS)[number] | undefined;
            if (level && LOG_LEVELS.indexOf(level) < threshold) return;
            send(`data: ${line}\n\n`);
          }, close),
      });
      return new Response(stream, {
        headers: { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" },
      });
    });
}
