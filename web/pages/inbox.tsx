/** @jsxImportSource hono/jsx */
import { type EventRow, EventsTable, Pager } from "../components/events-table.tsx";
import { type Chrome, Layout } from "../components/layout.tsx";
import { LiveRegion } from "../components/live.tsx";

export interface InboxListView {
  tenant: string;
  rows: readonly EventRow[];
  newest: string | null;
  older: string | null;
  /** The URL the list fetches again when mail arrives; null: not live (an older page). */
  live: string | null;
}

/** The inbox's list alone: what an htmx request for the inbox gets. */
export function InboxList(props: InboxListView) {
  return (
    <LiveRegion id="inbox-list" url={props.live} on={["events"]}>
      <EventsTable
        rows={props.rows}
        caption={`Mail for ${props.tenant}`}
        showTenant={false}
        hrefOf={(r) => `/t/${props.tenant}/inbox/${r.id}`}
      />
      <Pager newest={props.newest} older={props.older} />
    </LiveRegion>
  );
}

/** "24 hours", "7 days": the inbox_window setting as the page says it. */
const windowText = (ms: number) =>
  ms % 86_400_000 === 0 && ms >= 2 * 86_400_000
    ? `${ms / 86_400_000} days`
    : ms % 3_600_000 === 0
      ? `${ms / 3_600_000} hours`
      : `${Math.round(ms / 60_000)} minutes`;

export function InboxPage(props: { chrome: Chrome; windowMs?: number } & InboxListView) {
  const { chrome, windowMs, ...list } = props;
  return (
    <Layout chrome={chrome} title={`Inbox of ${props.tenant}`} live>
      <p class="muted">Mail received in the last {windowText(windowMs ?? 86_400_000)}, newest first.</p>
      <InboxList {...list} />
    </Layout>
  );
}
