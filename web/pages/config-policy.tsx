/** @jsxImportSource hono/jsx */
import { type Chrome, Layout, Message } from "../components/layout.tsx";
import { DiffTable, type DiffRow } from "./config-form.tsx";

export interface PolicyVersionRow {
  version: number;
  op: string;
  actor: string;
  at: string;
}

export interface PolicyHistoryView {
  tenant: string;
  name: string;
  versions: readonly PolicyVersionRow[];
  /** The versions compared, and what differs, when two were chosen. */
  diff: { from: number; to: number; rows: readonly DiffRow[] } | null;
  message: string | null;
}

function VersionSelect(props: { name: string; label: string; versions: readonly PolicyVersionRow[]; value: number }) {
  return (
    <label>
      {props.label}
      <select name={props.name}>
        {props.versions.map((v) => (
          <option value={String(v.version)} selected={v.version === props.value}>
            {`${v.version} (${v.op}, ${v.at})`}
          </option>
        ))}
      </select>
    </label>
  );
}

export function PolicyHistoryPage(props: { chrome: Chrome; view: PolicyHistoryView }) {
  const v = props.view;
  const base = `/console/config/${v.tenant}/policies/${v.name}`;
  const newest = v.versions.at(-1)?.version ?? 0;
  return (
    <Layout chrome={props.chrome} title={`History of policy ${v.name}`}>
      <p>
        <a href={base}>Edit the policy</a> · <a href={`${base}/test`}>Dry run</a> ·{" "}
        <a href={`/console/config/${v.tenant}`}>Back to {v.tenant}</a>
      </p>
      <div class="table-wrap">
        <table>
          <caption class="muted">Every version, oldest first</caption>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Change</th>
              <th scope="col">By</th>
              <th scope="col">When</th>
            </tr>
          </thead>
          <tbody>
            {v.versions.map((r) => (
              <tr>
                <td>{r.version}</td>
                <td>{r.op}</td>
                <td>{r.actor}</td>
                <td>
                  <time datetime={r.at}>{r.at}</time>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2 id="compare">Compare two versions</h2>
      <Message text={v.message} />
      {v.versions.length > 1 ? (
        <form class="filters" method="get" action={`${base}/history`} aria-labelledby="compare">
          <VersionSelect name="from" label="From" versions={v.versions} value={v.diff?.from ?? newest - 1} />
          <VersionSelect name="to" label="To" versions={v.versions} value={v.diff?.to ?? newest} />
          <div>
            <button type="submit">Compare</button>
          </div>
        </form>
      ) : (
        <p class="muted">Only one version so far.</p>
      )}
      {v.diff ? (
        <DiffTable
          rows={v.diff.rows}
          caption={`Version ${v.diff.from} → version ${v.diff.to}`}
          fromLabel={`Version ${v.diff.from}`}
          toLabel={`Version ${v.diff.to}`}
        />
      ) : null}
    </Layout>
  );
}

export interface PolicyTestView {
  tenant: string;
  name: string;
  /** Recent events of the tenant to choose from. */
  events: readonly { id: string; label: string }[];
  versions: readonly number[];
  chosen: { event: string; version: number | null };
  message: string | null;
  result: {
    policies: readonly { name: string; global: boolean; version: number; draft: boolean }[];
    decisions: readonly {
      target: string;
      effect: string;
      policy: string | null;
      /** "rule 0 (name)", "the policy's default", or "none" when no policy decided. */
      rule: string;
      reason: string | null;
    }[];
  } | null;
}

export function PolicyTestPage(props: { chrome: Chrome; view: PolicyTestView }) {
  const v = props.view;
  const base = `/console/config/${v.tenant}/policies/${v.name}`;
  return (
    <Layout chrome={props.chrome} title={`Dry run of policy ${v.name}`}>
      <p>
        What the global policies and {v.tenant}'s decide for a stored event's delivery to each endpoint, as the
        dispatcher would. Nothing is stored or sent. <a href={base}>Edit the policy</a> ·{" "}
        <a href={`${base}/history`}>History</a>
      </p>
      <form class="filters" method="get" action={`${base}/test`} aria-label="Dry run">
        <label>
          Event id
          <input name="event" type="text" value={v.chosen.event} list="recent-events" autocomplete="off" />
        </label>
        <datalist id="recent-events">
          {v.events.map((e) => (
            <option value={e.id}>{e.label}</option>
          ))}
        </datalist>
        <label>
          Version of {v.name}
          <select name="version">
            <option value="" selected={v.chosen.version === null}>
              the stored one
            </option>
            {v.versions.map((n) => (
              <option value={String(n)} selected={v.chosen.version === n}>
                {`version ${n}`}
              </option>
            ))}
          </select>
        </label>
        <div>
          <button type="submit">Run</button>
        </div>
      </form>
      {v.events.length ? (
        <details>
          <summary>Recent events of {v.tenant}</summary>
          <ul>
            {v.events.map((e) => (
              <li>
                <a href={`${base}/test?event=${e.id}`}>{e.id}</a> {e.label}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
      <Message text={v.message} />
      {v.result ? (
        <>
          <h2>Decisions</h2>
          <p class="muted">
            Policies consulted:{" "}
            {v.result.policies.length
              ? v.result.policies
                  .map((p) => `${p.global ? "global " : ""}${p.name} v${p.version}${p.draft ? " (draft)" : ""}`)
                  .join(", ")
              : "none"}
          </p>
          {v.result.decisions.length ? (
            <div class="table-wrap">
              <table class="decisions">
                <thead>
                  <tr>
                    <th scope="col">Endpoint</th>
                    <th scope="col">Decision</th>
                    <th scope="col">Policy</th>
                    <th scope="col">Rule</th>
                    <th scope="col">Reason</th>
                  </tr>
                </thead>
                <tbody>
                  {v.result.decisions.map((d) => (
                    <tr>
                      <td>{d.target}</td>
                      <td class={`effect-${d.effect}`}>{d.effect}</td>
                      <td>{d.policy ?? "none"}</td>
                      <td>{d.rule}</td>
                      <td>{d.reason ?? ""}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <p class="muted">The tenant has no endpoints to decide for.</p>
          )}
        </>
      ) : null}
    </Layout>
  );
}
