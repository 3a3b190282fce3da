/** @jsxImportSource hono/jsx */
import { FilterSelect } from "../components/filters.tsx";
import { type Chrome, Layout } from "../components/layout.tsx";

export interface LogsView {
  filters: { level: string; tenant: string };
  levels: readonly string[];
  tenants: readonly string[];
  /** The SSE stream with the same filters. */
  stream: string;
}

/**
 * The live log: htmx's SSE extension appends each `line` message (a rendered, escaped <li>) to
 * the list. The lines are the logger's, redacted before they reach the tap.
 */
export function LogsPage(props: { chrome: Chrome; view: LogsView }) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title="Logs">
      <form class="filters" method="get" action="/console/logs" role="search" aria-label="Filter the log">
        <FilterSelect name="level" label="Lowest level" value={v.filters.level} options={v.levels} all={false} />
        <FilterSelect name="tenant" label="Tenant" value={v.filters.tenant} options={v.tenants} />
        <div>
          <button type="submit">Follow</button>
        </div>
      </form>
      <p class="muted">New lines appear below as they are written (secrets are redacted).</p>
      <div hx-ext="sse" sse-connect={v.stream}>
        <ol class="log-lines" id="log-lines" aria-label="Log lines" sse-swap="line" hx-swap="beforeend" />
      </div>
    </Layout>
  );
}

/** One log line as the stream sends it: text, escaped. */
export function LogLine(props: { level: string; line: string }) {
  return <li class={`level-${props.level}`}>{props.line}</li>;
}
