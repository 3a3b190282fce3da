import { Elysia } from "elysia";
import { EventsList, EventsPage, type EventsView } from "../../web/index.ts";
import { canAccess, visibleTenants } from "../api/auth.ts";
import { isId } from "../core/ids.ts";
import { AppError } from "../errors/index.ts";
import { CHANNELS, EVENT_TYPES } from "../events/envelope.ts";
import { EVENT_SEARCH_MAX, EVENT_STATES, type EventState } from "../store/index.ts";
import { type ConsoleKit, NAME, PAGE, queryString } from "./kit.ts";
import { fragment, wantsFragment } from "./live.ts";
import { eventRow } from "./views.ts";

/**
 * How many events one page of the list examines for the filters no index serves (channel, time,
 * state, search): a page costs at most this many rows however rare the matches
 * (docs/console.md#events).
 */
export const EVENTS_SCAN = 5_000;

const STATE_LABELS: Record<EventState, string> = {
  delivered: "delivered",
  failing: "failing (retrying)",
  dead: "dead",
  awaiting_approval: "awaiting approval",
  none: "no delivery",
};

/** A time filter as typed: ISO 8601, UTC when it has no offset (what a datetime-local field sends). */
function timeOf(name: string, value: string): number | undefined {
  if (!value) return undefined;
  const utc = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(value) ? `${value}Z` : value;
  const t = /^\d{4}-\d{2}-\d{2}T/.test(utc) ? Date.parse(utc) : Number.NaN;
  if (Number.isNaN(t)) throw new AppError("invalid_input", `${name} must be a time like 2026-11-21T14:02:11 (UTC)`);
  return t;
}

/** As a datetime-local field shows it (UTC, to the second). */
const fieldTime = (t: number | undefined) => (t === undefined ? "" : new Date(t).toISOString().slice(0, 19));

/** `GET /console/events`: the filtered list, keyset-paginated; an htmx request gets the list alone. */
export function eventsListRoutes(kit: ConsoleKit) {
  const { storage } = kit;
  return new Elysia({ name: "console-events-list", normalize: false, detail: { hide: true } }).get(
    "/console/events",
    kit.signedIn(async (v, { request }) => {
      const q = new URL(request.url).searchParams;
      const param = (name: string) => (q.get(name) ?? "").trim();
      const tenant = param("tenant");
      const channel = param("channel");
      const type = param("type");
      const state = param("state");
      const search = param("q");
      const before = param("before");
      if (tenant && !(NAME.test(tenant) && canAccess(v.principal, tenant, "read"))) return kit.notFound(v);
      if (channel && !(CHANNELS as readonly string[]).includes(channel))
        throw new AppError("invalid_input", `channel must be one of ${CHANNELS.join(", ")}`);
      if (type && !(EVENT_TYPES as readonly string[]).includes(type))
        throw new AppError("invalid_input", `type must be one of ${EVENT_TYPES.join(", ")}`);
      if (state && !(EVENT_STATES as readonly string[]).includes(state))
        throw new AppError("invalid_input", `state must be one of ${EVENT_STATES.join(", ")}`);
      if (search.length > EVENT_SEARCH_MAX)
        throw new AppError("invalid_input", `the search takes at most ${EVENT_SEARCH_MAX} characters`);
      if (before && !isId(before, "evt")) throw new AppError("invalid_input", "before must be an event id");
      const since = timeOf("since", param("since"));
      const until = timeOf("until", param("until"));
      const filters = {
        tenant,
        channel,
        type,
        state,
        since: fieldTime(since),
        until: fieldTime(until),
        q: search,
      };
      const visible = visibleTenants(v.principal);
      const page = await storage.events.page({
        tenants: tenant ? [tenant] : visible === "all" ? undefined : visible,
        channel: channel || undefined,
        type: type || undefined,
        state: (state || undefined) as EventState | undefined,
        since,
        until,
        search: search || undefined,
        before: before || undefined,
        limit: PAGE,
        scan: EVENTS_SCAN,
      });
      const list: EventsView["list"] = {
        rows: page.events.map((r) => eventRow(r.envelope)),
        newest: before ? `/console/events${queryString(filters)}` : null,
        older: page.next ? `/console/events${queryString({ ...filters, before: page.next })}` : null,
        // New events land on the newest page only; an event's deliveries decide the state filter.
        live: before ? null : `/console/events${queryString(filters)}`,
        liveOn: state ? ["events", "deliveries"] : ["events"],
        examined: page.partial ? EVENTS_SCAN : null,
      };
      if (wantsFragment(request)) return fragment(EventsList({ list }));
      return kit.html(
        EventsPage({
          chrome: kit.chromeFor(v, "events"),
          view: {
            filters,
            tenants: await kit.visibleTenantList(v),
            channels: CHANNELS,
            types: EVENT_TYPES,
            states: EVENT_STATES.map((s) => ({ value: s, label: STATE_LABELS[s] })),
            list,
          },
        }),
        200,
        { vary: "HX-Request" },
      );
    }),
  );
}
