/** @jsxImportSource hono/jsx */
import { type EventRow, EventsTable, Pager } from "../components/events-table.tsx";
import { FilterSelect } from "../components/filters.tsx";
import { type Chrome, Layout } from "../components/layout.tsx";
import { LiveRegion } from "../components/live.tsx";

export interface EventsFilters {
  tenant: string;
  channel: string;
  type: string;
  /** What became of the event's deliveries (the store's EVENT_STATES). */
  state: string;
  /** Received at or after / at or before, as typed (ISO 8601, UTC when no offset). */
  since: string;
  until: string;
  /** Search on subject or sender. */
  q: string;
}

/** The list under the filters: the part of the page that updates itself. */
export interface EventsListView {
  rows: readonly EventRow[];
  newest: string | null;
  older: string | null;
  /** The URL the list fetches again when the live stream says `liveOn` changed; null: not live (an older page). */
  live: string | null;
  liveOn: readonly string[];
  /** Fewer rows than a page because the page examined this many events: `older` searches on. */
  examined: number | null;
}

export interface EventsView {
  filters: EventsFilters;
  /** What the selects offer. */
  tenants: readonly string[];
  channels: readonly string[];
  types: readonly string[];
  states: readonly { value: string; label: string }[];
  list: EventsListView;
}

/** The events list alone: what an htmx request for /console/events gets. */
export function EventsList(props: { list: EventsListView }) {
  const l = props.list;
  return (
    <LiveRegion id="events-list" url={l.live} on={l.liveOn}>
      <EventsTable rows={l.rows} caption="Newest first" />
      {l.examined !== null ? (
        <p class="muted">
          {`Searched the ${l.examined.toLocaleString("en")} events before this point without filling the page: "Older" searches the next ones.`}
        </p>
      ) : null}
      <Pager newest={l.newest} older={l.older} />
    </LiveRegion>
  );
}

export function EventsPage(props: { chrome: Chrome; view: EventsView }) {
  const v = props.view;
  const f = v.filters;
  return (
    <Layout chrome={props.chrome} title="Events" live>
      <form class="filters" method="get" action="/console/events" role="search" aria-label="Filter events">
        <FilterSelect name="tenant" label="Tenant" value={f.tenant} options={v.tenants} />
        <FilterSelect name="channel" label="Channel" value={f.channel} options={v.channels} />
        <FilterSelect name="type" label="Type" value={f.type} options={v.types} />
        <FilterSelect name="state" label="Deliveries" value={f.state} options={v.states} />
        <label>
          Since (UTC)
          <input type="datetime-local" name="since" value={f.since} step={1} />
        </label>
        <label>
          Until (UTC)
          <input type="datetime-local" name="until" value={f.until} step={1} />
        </label>
        <label>
          Subject or sender
          <input type="search" name="q" value={f.q} maxlength={100} />
        </label>
        <div>
          <button type="submit">Filter</button>
        </div>
      </form>
      <EventsList list={v.list} />
    </Layout>
  );
}
