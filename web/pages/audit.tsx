/** @jsxImportSource hono/jsx */
import { Pager } from "../components/events-table.tsx";
import { FilterSelect } from "../components/filters.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";

export interface AuditItem {
  seq: number;
  at: string;
  actor: string;
  tenant: string | null;
  action: string;
  target: string | null;
  decision: string | null;
  details: string;
}

export interface AuditView {
  filters: { tenant: string; actor: string; event: string };
  tenants: readonly string[];
  items: readonly AuditItem[];
  newest: string | null;
  older: string | null;
  /** The last verification of the chain (an `audit.verify` entry), or null when none was recorded. */
  verification: { ok: boolean; at: string; by: string; entries: number; problem: string | null } | null;
  /** Whether this user may run the verification (admins). */
  canVerify: boolean;
  message: { text: string; kind: "error" | "info" } | null;
}

export function AuditPage(props: { chrome: Chrome; view: AuditView }) {
  const v = props.view;
  const last = v.verification;
  return (
    <Layout chrome={props.chrome} title="Audit log">
      <Message text={v.message?.text} kind={v.message?.kind} />
      <section aria-labelledby="chain">
        <h2 id="chain">The chain</h2>
        {last ? (
          <p>
            Last verified {last.at} by {last.by}:{" "}
            {last.ok ? <strong class="verdict-pass">intact</strong> : <strong class="verdict-fail">broken</strong>} (
            {last.entries} entries checked){last.problem ? `: ${last.problem}` : ""}
          </p>
        ) : (
          <p class="muted">Not verified from the console yet.</p>
        )}
        {v.canVerify ? (
          <form class="inline" method="post" action="/console/audit/verify">
            <CsrfField token={props.chrome.csrf ?? ""} />
            <button type="submit">Verify now</button>
          </form>
        ) : null}
      </section>
      <section aria-labelledby="entries">
        <h2 id="entries">Entries</h2>
        <form class="filters" method="get" action="/console/audit" role="search" aria-label="Filter entries">
          <FilterSelect name="tenant" label="Tenant" value={v.filters.tenant} options={v.tenants} />
          <label>
            Actor
            <input type="text" name="actor" value={v.filters.actor} placeholder="user:ann" />
          </label>
          <label>
            Event
            <input type="text" name="event" value={v.filters.event} placeholder="evt_…" />
          </label>
          <div>
            <button type="submit">Filter</button>
          </div>
        </form>
        <div class="table-wrap">
          <table>
            <caption class="muted">Newest first</caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">At</th>
                <th scope="col">Actor</th>
                <th scope="col">Tenant</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Decision</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {v.items.map((e) => (
                <tr>
                  <td>{String(e.seq)}</td>
                  <td>{e.at}</td>
                  <td>{e.actor}</td>
                  <td>{e.tenant ?? ""}</td>
                  <td>{e.action}</td>
                  <td>{e.target ?? ""}</td>
                  <td>{e.decision ?? ""}</td>
                  <td>
                    <code>{e.details}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager newest={v.newest} older={v.older} />
      </section>
    </Layout>
  );
}
