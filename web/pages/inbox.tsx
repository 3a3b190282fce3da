/** @jsxImportSource hono/jsx */
import { type EventRow, EventsTable, Pager } from "../components/events-table.tsx";
import { type Chrome, Layout } from "../components/layout.tsx";

export function InboxPage(props: {
  chrome: Chrome;
  tenant: string;
  rows: readonly EventRow[];
  newest: string | null;
  older: string | null;
}) {
  return (
    <Layout chrome={props.chrome} title={`Inbox of ${props.tenant}`}>
      <p class="muted">Mail received in the last 24 hours, newest first.</p>
      <EventsTable
        rows={props.rows}
        caption={`Mail for ${props.tenant}`}
        showTenant={false}
        hrefOf={(r) => `/t/${props.tenant}/inbox/${r.id}`}
      />
      <Pager newest={props.newest} older={props.older} />
    </Layout>
  );
}
