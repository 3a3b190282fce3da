/** @jsxImportSource hono/jsx */
/** One row of an event list, as the console shows it. */
export interface EventRow {
  id: string;
  tenant: string;
  type: string;
  channel: string;
  receivedAt: string;
  /** One line: sender and subject, or the webhook's binding and action (events/envelope.ts summarize). */
  summary: string;
}

export function EventsTable(props: {
  rows: readonly EventRow[];
  caption: string;
  showTenant?: boolean;
  /** Where a row links to (default: its event page). */
  hrefOf?: (r: EventRow) => string;
}) {
  if (!props.rows.length) return <p class="muted">No events.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption class="muted">{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">Received</th>
            {props.showTenant === false ? null : <th scope="col">Tenant</th>}
            <th scope="col">Type</th>
            <th scope="col">Summary</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr>
              <td>
                <a href={props.hrefOf ? props.hrefOf(r) : `/console/events/${r.id}`}>
                  <time datetime={r.receivedAt}>{r.receivedAt.replace("T", " ").replace(/\.\d+Z$/, "Z")}</time>
                </a>
              </td>
              {props.showTenant === false ? null : <td>{r.tenant}</td>}
              <td>{r.type}</td>
              <td>{r.summary}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Keyset pagination: the first (newest) page, and the page after the last row shown. */
export function Pager(props: { newest: string | null; older: string | null; labels?: readonly [string, string] }) {
  if (!props.newest && !props.older) return null;
  const [first, next] = props.labels ?? ["Newest", "Older"];
  return (
    <nav class="pager" aria-label="Pages">
      {props.newest ? <a href={props.newest}>{first}</a> : null}
      {props.older ? (
        <a href={props.older} rel="next">
          {next}
        </a>
      ) : null}
    </nav>
  );
}
