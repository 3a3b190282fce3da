/** @jsxImportSource hono/jsx */
import { type Chrome, Layout } from "../components/layout.tsx";
import { BarChart } from "../components/chart.tsx";
import { LiveRegion } from "../components/live.tsx";

/** Counts per bucket, oldest first (the store's `rates`). */
export interface RateCounts {
  events: readonly number[];
  delivered: readonly number[];
  dead: readonly number[];
}

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
  /** Per minute over the last hour and per hour over the last day: each chart's first bucket's start. */
  rates: { hour: { start: number; rates: RateCounts }; day: { start: number; rates: RateCounts } };
  /** The data dir's disk (admins only; null: not shown). */
  disk: { free: number; total: number; database: number; spool: number } | null;
  /**
   * The newest "Verify now" of the audit chain (admins only: undefined for a member; null: never
   * verified from the console).
   */
  verification?: { ok: boolean; at: string; by: string; entries: number; problem: string | null } | null;
}

/** Bytes in binary units, one decimal from KiB up. */
export function bytes(n: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${x.toFixed(1)} ${units[i]}`;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Each chart's window: per minute over the last hour, or per hour over the last day. */
const WINDOWS = {
  hour: { per: "minute", span: "in the last hour", bucketMs: MINUTE, labelEvery: 10 },
  day: { per: "hour", span: "in the last day", bucketMs: HOUR, labelEvery: 4 },
} as const;

/** What a chart counts: events received, or deliveries that got delivered or gave up. */
const MEASURES = {
  events: {
    title: "Events received",
    series: (r: RateCounts) => [{ label: "events", class: "bar-events", counts: r.events }],
  },
  deliveries: {
    title: "Deliveries",
    series: (r: RateCounts) => [
      { label: "delivered", class: "bar-delivered", counts: r.delivered },
      { label: "dead", class: "bar-dead", counts: r.dead },
    ],
  },
} as const;

function RateChart(props: {
  measure: keyof typeof MEASURES;
  window: keyof typeof WINDOWS;
  rates: DashboardView["rates"];
}) {
  const m = MEASURES[props.measure];
  const w = WINDOWS[props.window];
  const { start, rates } = props.rates[props.window];
  return (
    <BarChart
      id={`chart-${props.measure}-${props.window}`}
      title={`${m.title} per ${w.per}, last ${props.window}`}
      span={w.span}
      start={start}
      bucketMs={w.bucketMs}
      labelEvery={w.labelEvery}
      series={m.series(rates)}
    />
  );
}

function Charts(props: { rates: DashboardView["rates"] }) {
  return (
    <section aria-labelledby="rates">
      <h2 id="rates">Ingest and delivery</h2>
      <p class="muted">
        Times in UTC; the last bar is the current minute or hour. Deliveries count when they got{" "}
        <span class="legend-delivered">delivered</span> or gave up (<span class="legend-dead">dead</span>).
      </p>
      <div class="charts">
        <RateChart measure="events" window="hour" rates={props.rates} />
        <RateChart measure="events" window="day" rates={props.rates} />
        <RateChart measure="deliveries" window="hour" rates={props.rates} />
        <RateChart measure="deliveries" window="day" rates={props.rates} />
      </div>
    </section>
  );
}

/** The disk and the audit chain: an admin's, appliance-wide. */
function Appliance(props: { view: DashboardView }) {
  const { disk, verification } = props.view;
  if (!disk && verification === undefined) return null;
  return (
    <section aria-labelledby="appliance">
      <h2 id="appliance">Appliance</h2>
      <div class="cards">
        {disk ? (
          <div class="card" id="disk">
            <div>Disk (data dir)</div>
            <div class="big">{`${bytes(disk.free)} free`}</div>
            <div class="muted">
              {`of ${bytes(disk.total)} (${disk.total ? Math.round(((disk.total - disk.free) / disk.total) * 100) : 0}% used)`}
            </div>
            <div class="muted">{`Database ${bytes(disk.database)} · spool ${bytes(disk.spool)}`}</div>
          </div>
        ) : null}
        {verification !== undefined ? (
          <div class="card" id="audit-status">
            <div>Audit chain</div>
            {verification ? (
              <>
                <div class={`big ${verification.ok ? "good" : "bad"}`}>{verification.ok ? "Intact" : "Broken"}</div>
                <div class="muted">
                  {`Verified ${verification.at} by ${verification.by}: ${verification.entries} entries`}
                  {verification.problem ? ` (${verification.problem})` : ""}
                </div>
              </>
            ) : (
              <div class="big">Never verified</div>
            )}
            <div>
              <a href="/console/audit">Audit log and Verify now</a>
            </div>
          </div>
        ) : null}
      </div>
    </section>
  );
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

      <Charts rates={v.rates} />

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

      <Appliance view={v} />
    </LiveRegion>
  );
}
