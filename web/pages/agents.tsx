/** @jsxImportSource hono/jsx */
import { Pager } from "../components/events-table.tsx";
import { Facts } from "../components/facts.tsx";
import { type Chrome, Layout, Message } from "../components/layout.tsx";

/** One runtime as text (every value from outside escaped by the renderer). */
export interface RuntimeItem {
  id: string;
  /** "claimed", "ready (destroying)". */
  state: string;
  tenant: string | null;
  agent: string | null;
  /** "support@v3", or null before a claim. */
  template: string | null;
  isolation: string;
  heartbeatAt: string | null;
  syncedAt: string | null;
  error: string | null;
}

export interface AgentsView {
  /** Null: this appliance runs no agent pool. */
  pool: {
    minIdle: number;
    /** "bwrap", or "process (no sandbox: …)". */
    isolation: string;
    onEmpty: string;
    /** Runtimes by state: an admin's only (the pool is the whole appliance's). */
    byState: string | null;
  } | null;
  runtimes: readonly RuntimeItem[];
  /** The state filter, empty for all. */
  state: string;
  states: readonly string[];
  first: string | null;
  next: string | null;
  message: { text: string; kind: "error" | "info" } | null;
}

export function AgentsPage(props: { chrome: Chrome; view: AgentsView }) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title="Agents">
      <Message text={v.message?.text} kind={v.message?.kind} />
      {v.pool ? (
        <section aria-labelledby="pool">
          <h2 id="pool">Pool</h2>
          <Facts
            rows={[
              ["Warm runtimes kept ready (min_idle)", String(v.pool.minIdle)],
              ["Isolation", v.pool.isolation],
              ["With none ready, a claim", v.pool.onEmpty],
              ["Runtimes by state", v.pool.byState],
            ]}
          />
        </section>
      ) : (
        <p class="muted">This appliance runs no agent pool.</p>
      )}
      <section aria-labelledby="runtimes">
        <h2 id="runtimes">Runtimes</h2>
        <form class="filters" method="get" action="/console/agents">
          <label>
            State
            <select name="state">
              <option value="" selected={v.state === ""}>
                any
              </option>
              {v.states.map((s) => (
                <option value={s} selected={v.state === s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <div>
            <button type="submit">Show</button>
          </div>
        </form>
        {v.runtimes.length ? (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Runtime</th>
                  <th scope="col">State</th>
                  <th scope="col">Tenant</th>
                  <th scope="col">Agent</th>
                  <th scope="col">Template</th>
                  <th scope="col">Isolation</th>
                  <th scope="col">Last heartbeat</th>
                  <th scope="col">Last synced</th>
                </tr>
              </thead>
              <tbody>
                {v.runtimes.map((r) => (
                  <tr>
                    <td>{r.id}</td>
                    <td>
                      {r.state}
                      {r.error ? <span class="muted"> ({r.error})</span> : null}
                    </td>
                    <td>{r.tenant ?? ""}</td>
                    <td>{r.agent ?? ""}</td>
                    <td>{r.template ?? ""}</td>
                    <td>{r.isolation}</td>
                    <td>{r.heartbeatAt ?? "never"}</td>
                    <td>{r.syncedAt ?? "never"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">No runtimes{v.state ? ` in state ${v.state}` : ""}.</p>
        )}
        <Pager newest={v.first} older={v.next} labels={["First", "Next"]} />
      </section>
    </Layout>
  );
}
