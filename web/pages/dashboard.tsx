/** @jsxImportSource hono/jsx */
import { type Chrome, Layout } from "../components/layout.tsx";
import { LiveRegion } from "../components/live.tsx";

export interface DashboardView {
  /** The job queue (appliance-wide: admins only). */
  queue: { available: number; scheduled: number; leased: number; dead: number } | null;
  /** Deliveries that gave up (dead), in the tenants the user sees; `more`: at least this many. */
  deadDeliveries: { count: number; more: boolean };
  approvals: {
    count: number;
    more: boolean;
    items: { id: string; tenant: string; what: string; expiresAt: string }[];
  };
  circuits: { tenant: string; endpoint: string; state: string; failures: number; retryAt: string | null }[];
  tenants: readonly string[];
}

const count = (n: number, more: boolean) => (more ? `${n}+` : String(n));

export function DashboardPage(props: { chrome: Chrome; view: DashboardView }) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title="Dashboard" live>
      <DashboardLive view={v} />
      <section aria-labelledby="inboxes">
        <h2 id="inboxes">Inboxes</h2>
        {v.tenants.length ? (
          <ul>
            {v.tenants.map((t) => (
              <li>
                <a href={`/t/${encodeURIComponent(t)}/inbox`}>{t}</a>
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">No tenant yet.</p>
        )}
      </section>
    </Layout>
  );
}

/** The counters and tables that change as work flows: what an htmx request for /console gets. */
export function DashboardLive(props: { view: DashboardView }) {
  const v = props.view;
  return (
    <LiveRegion id="dashboard-live" url="/console" on={["dashboard"]}>
      <section aria-labelledby="now">
        <h2 id="now">Now</h2>
        <div class="cards">
          {v.queue ? (
            <div class="card">
              <div>Queue backlog</div>
              <div class="big">{v.queue.available + v.queue.scheduled + v.queue.leased}</div>
              <div class="muted">
                {v.queue.available} ready · {v.queue.scheduled} scheduled · {v.queue.leased} running
              </div>
            </div>
          ) : null}
          {v.queue ? (
            <div class="card">
              <div>Dead-lettered jobs</div>
              <div class="big">{v.queue.dead}</div>
            </div>
          ) : null}
          <div class="card">
            <div>Dead deliveries</div>
            <div class="big">{count(v.deadDeliveries.count, v.deadDeliveries.more)}</div>
          </div>
          <div class="card">
            <div>Approvals waiting</div>
            <div class="big">{count(v.approvals.count, v.approvals.more)}</div>
          </div>
          <div class="card">
            <div>Endpoints with an open circuit</div>
            <div class="big">{v.circuits.length}</div>
          </div>
        </div>
      </section>

      <section aria-labelledby="approvals">
        <h2 id="approvals">Approvals waiting</h2>
        {v.approvals.items.length ? (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Tenant</th>
                  <th scope="col">Action</th>
                  <th scope="col">Expires</th>
                </tr>
              </thead>
              <tbody>
                {v.approvals.items.map((a) => (
                  <tr>
                    <td>{a.tenant}</td>
                    <td>{a.what}</td>
                    <td>
                      <time datetime={a.expiresAt}>{a.expiresAt}</time>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">None.</p>
        )}
      </section>

      <section aria-labelledby="circuits">
        <h2 id="circuits">Endpoints with an open circuit</h2>
        {v.circuits.length ? (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Tenant</th>
                  <th scope="col">Endpoint</th>
                  <th scope="col">State</th>
                  <th scope="col">Failures in a row</th>
                  <th scope="col">Next probe</th>
                </tr>
              </thead>
              <tbody>
                {v.circuits.map((c) => (
                  <tr>
                    <td>{c.tenant}</td>
                    <td>{c.endpoint}</td>
                    <td>{c.state.replace("_", "-")}</td>
                    <td>{c.failures}</td>
                    <td>{c.retryAt ?? "now"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">None: every endpoint takes deliveries.</p>
        )}
      </section>
    </LiveRegion>
  );
}
