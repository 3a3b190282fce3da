/** @jsxImportSource hono/jsx */
import { type EventRow, EventsTable, Pager } from "../components/events-table.tsx";
import { type Chrome, Layout } from "../components/layout.tsx";

export interface EventsView {
  filters: { tenant: string; channel: string; type: string };
  /** What the selects offer. */
  tenants: readonly string[];
  channels: readonly string[];
  types: readonly string[];
  rows: readonly EventRow[];
  newest: string | null;
  older: string | null;
}

function Select(props: { name: string; label: string; value: string; options: readonly string[] }) {
  return (
    <label>
      {props.label}
      <select name={props.name}>
        <option value="" selected={props.value === ""}>
          all
        </option>
        {props.options.map((o) => (
          <option value={o} selected={props.value === o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

export function EventsPage(props: { chrome: Chrome; view: EventsView }) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title="Events">
      <form class="filters" method="get" action="/console/events" role="search" aria-label="Filter events">
        <Select name="tenant" label="Tenant" value={v.filters.tenant} options={v.tenants} />
        <Select name="channel" label="Channel" value={v.filters.channel} options={v.channels} />
        <Select name="type" label="Type" value={v.filters.type} options={v.types} />
        <div>
          <button type="submit">Filter</button>
        </div>
      </form>
      <EventsTable rows={v.rows} caption="Newest first" />
      <Pager newest={v.newest} older={v.older} />
    </Layout>
  );
}
