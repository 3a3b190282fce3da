/** @jsxImportSource hono/jsx */
import { Fields, type FieldView } from "../components/fields.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";

/** One field that differs between two specs, values as compact JSON (absent: null). */
export interface DiffRow {
  path: string;
  from: string | null;
  to: string | null;
}

export function DiffTable(props: { rows: readonly DiffRow[]; caption: string; fromLabel: string; toLabel: string }) {
  if (!props.rows.length) return <p class="muted">No field differs.</p>;
  return (
    <div class="table-wrap">
      <table class="diff">
        <caption class="muted">{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">Field</th>
            <th scope="col">{props.fromLabel}</th>
            <th scope="col">{props.toLabel}</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr>
              <th scope="row">
                <code>{r.path}</code>
              </th>
              <td class="from">{r.from === null ? <em>(not set)</em> : <code>{r.from}</code>}</td>
              <td class="to">{r.to === null ? <em>(not set)</em> : <code>{r.to}</code>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export interface ConfigFormView {
  title: string;
  /** Where the form posts. */
  action: string;
  csrf: string;
  fields: readonly FieldView[];
  /** Messages no single field holds. */
  general: readonly string[];
  /** A note after a save ("Saved as resource_version 3"). */
  note: string | null;
  /** The version the form was opened with (sent back as If-Match); null when creating. */
  resourceVersion: number | null;
  /** The stored resource changed since the form was opened: what differs, and the way back. */
  conflict: { storedVersion: number; diff: readonly DiffRow[]; reload: string } | null;
  cancel: string;
  /** Editing: the delete button's action. */
  deleteAction: string | null;
  /** Policies: history and dry run. */
  extra: readonly { href: string; label: string }[];
  submitLabel: string;
}

export function ConfigFormPage(props: { chrome: Chrome; view: ConfigFormView }) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title={v.title}>
      {v.conflict ? (
        <section class="conflict" aria-labelledby="conflict">
          <h2 id="conflict">Changed since you opened it</h2>
          <p role="alert">
            Someone saved this resource (now at resource_version {v.conflict.storedVersion}) after you opened the form.
            Nothing of yours was saved. Below: what differs between what you submitted and what is stored now.
          </p>
          <DiffTable rows={v.conflict.diff} caption="Stored now and yours" fromLabel="Stored now" toLabel="Yours" />
          <p>
            <a href={v.conflict.reload}>Reload: discard yours and edit what is stored now</a>, or check the form below
            (your values) and save it to overwrite the stored version deliberately.
          </p>
        </section>
      ) : null}
      <Message text={v.note} kind="info" />
      {v.general.map((g) => (
        <Message text={g} />
      ))}
      {v.resourceVersion !== null ? <p class="muted">resource_version {v.resourceVersion}</p> : null}
      {v.extra.length ? (
        <p>
          {v.extra.map((x, i) => (
            <>
              {i ? " · " : null}
              <a href={x.href}>{x.label}</a>
            </>
          ))}
        </p>
      ) : null}
      <form class="stack config" method="post" action={v.action} novalidate>
        <CsrfField token={v.csrf} />
        {v.resourceVersion !== null ? (
          <input type="hidden" name="resource_version" value={String(v.resourceVersion)} />
        ) : null}
        <Fields fields={v.fields} />
        <div class="actions">
          <button type="submit">{v.conflict ? "Overwrite with mine" : v.submitLabel}</button>
          <a href={v.cancel}>Cancel</a>
        </div>
      </form>
      {v.deleteAction && v.resourceVersion !== null ? (
        <form class="inline" method="post" action={v.deleteAction}>
          <CsrfField token={v.csrf} />
          <input type="hidden" name="resource_version" value={String(v.resourceVersion)} />
          <button type="submit" class="danger">
            Delete…
          </button>
        </form>
      ) : null}
    </Layout>
  );
}

/** The second step of a delete: the same POST again with `confirm`. */
export function ConfigDeletePage(props: {
  chrome: Chrome;
  view: { what: string; action: string; csrf: string; resourceVersion: number; cancel: string };
}) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title={`Delete ${v.what}?`}>
      <p>
        This deletes {v.what} (resource_version {v.resourceVersion}). It is recorded in the audit log and in the
        resource's history.
      </p>
      <form class="stack" method="post" action={v.action}>
        <CsrfField token={v.csrf} />
        <input type="hidden" name="resource_version" value={String(v.resourceVersion)} />
        <input type="hidden" name="confirm" value="yes" />
        <div class="actions">
          <button type="submit" class="danger">
            Delete {v.what}
          </button>
          <a href={v.cancel}>Cancel</a>
        </div>
      </form>
    </Layout>
  );
}

/** A refusal or a stale form, with where to go next. */
export function ConfigNoticePage(props: {
  chrome: Chrome;
  title: string;
  text: string;
  details?: readonly string[];
  back: { href: string; label: string };
}) {
  return (
    <Layout chrome={props.chrome} title={props.title}>
      <p role="alert">{props.text}</p>
      {props.details?.length ? (
        <ul>
          {props.details.map((d) => (
            <li>{d}</li>
          ))}
        </ul>
      ) : null}
      <p>
        <a href={props.back.href}>{props.back.label}</a>
      </p>
    </Layout>
  );
}
