/** @jsxImportSource hono/jsx */
import { Facts } from "../components/facts.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";
import { Attachments, AuthVerdicts } from "../components/mail.tsx";
import { Timeline, type TimelineSpan } from "../components/timeline.tsx";

export interface EventView {
  id: string;
  type: string;
  tenant: string;
  agent: string | null;
  channel: string;
  receivedAt: string;
  traceId: string;
  idempotencyKey: string | null;
  /** The envelope's source, each value as text (its headers apart). */
  source: readonly [string, string][];
  /** Header name and value pairs: a mail's headers, a webhook's request headers. */
  headers: readonly [string, string][];
  email: {
    from: string;
    to: string;
    cc: string;
    subject: string;
    date: string;
    messageId: string;
    text: string;
    attachments: readonly { filename: string; contentType: string; size: number }[];
    warnings: readonly string[];
  } | null;
  /** Sender-auth verdicts (SPF, DKIM, DMARC, ARC), when the event has them. */
  auth: readonly { check: string; verdict: string; detail: string }[] | null;
  /** Any other channel's data, or a webhook's JSON, pretty-printed. */
  json: string | null;
  /** A webhook's body when it is not JSON. */
  body: string | null;
  deliveries: readonly {
    id: string;
    endpoint: string;
    state: string;
    route: string | null;
    decision: string | null;
    lastStatus: number | null;
    lastError: string | null;
    attempts: readonly {
      attempt: number;
      startedAt: string;
      latencyMs: number;
      status: number | null;
      error: string | null;
    }[];
  }[];
  trace: readonly TimelineSpan[];
}

/** The deliveries' buttons: replay, retry, discard (only for a user who may change the tenant). */
export interface EventActions {
  csrf: string;
  /** The tenant's endpoints: one "Replay to" button each. */
  endpoints: readonly string[];
  /** Why the last action was refused (a conflict's one line), or what it did. */
  message: { text: string; kind: "error" | "info" } | null;
}

const RETRYABLE = new Set(["dead"]);
const DISCARDABLE = new Set(["dead", "retrying"]);

/** A POST form of one button, with the session's CSRF token. */
function ActionButton(props: {
  action: string;
  csrf: string;
  label: string;
  fields?: Record<string, string>;
  class?: string;
}) {
  return (
    <form class="inline" method="post" action={props.action}>
      <CsrfField token={props.csrf} />
      {Object.entries(props.fields ?? {}).map(([k, v]) => (
        <input type="hidden" name={k} value={v} />
      ))}
      <button type="submit" class={props.class}>
        {props.label}
      </button>
    </form>
  );
}

export function EventPage(props: { chrome: Chrome; view: EventView; actions?: EventActions | null }) {
  const v = props.view;
  const act = props.actions ?? null;
  return (
    <Layout chrome={props.chrome} title={v.email?.subject ? `Event: ${v.email.subject}` : `Event ${v.id}`}>
      <section aria-labelledby="envelope">
        <h2 id="envelope">Envelope</h2>
        <Facts
          rows={[
            ["Id", v.id],
            ["Type", v.type],
            ["Tenant", v.tenant],
            ["Agent", v.agent],
            ["Channel", v.channel],
            ["Received", v.receivedAt],
            ["Trace id", v.traceId],
            ["Idempotency key", v.idempotencyKey],
            ...v.source.map(([k, val]): [string, string] => [`source.${k}`, val]),
          ]}
        />
      </section>

      {v.auth ? (
        <section aria-labelledby="auth">
          <h2 id="auth">Sender authentication</h2>
          <AuthVerdicts auth={v.auth} />
        </section>
      ) : null}

      {v.email ? (
        <section aria-labelledby="message">
          <h2 id="message">Message</h2>
          <p>
            <a href={`/t/${v.tenant}/inbox/${v.id}`}>Open as a message</a> (its HTML part, attachments to download)
          </p>
          <Facts
            rows={[
              ["From", v.email.from],
              ["To", v.email.to],
              ["Cc", v.email.cc],
              ["Subject", v.email.subject],
              ["Date", v.email.date],
              ["Message-ID", v.email.messageId],
            ]}
          />
          {v.email.warnings.length ? (
            <ul>
              {v.email.warnings.map((w) => (
                <li class="verdict-other">{w}</li>
              ))}
            </ul>
          ) : null}
          <h3>Text</h3>
          <pre>{v.email.text}</pre>
          {v.email.attachments.length ? (
            <>
              <h3>Attachments</h3>
              <Attachments
                items={v.email.attachments.map((a, n) => ({
                  ...a,
                  href: `/t/${v.tenant}/inbox/${v.id}/attachments/${n}`,
                }))}
              />
            </>
          ) : null}
        </section>
      ) : null}

      {v.json !== null || v.body !== null ? (
        <section aria-labelledby="data">
          <h2 id="data">Data</h2>
          <pre>{v.json ?? v.body}</pre>
        </section>
      ) : null}

      {v.headers.length ? (
        <section aria-labelledby="headers">
          <h2 id="headers">Headers</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Value</th>
                </tr>
              </thead>
              <tbody>
                {v.headers.map(([name, value]) => (
                  <tr>
                    <td>{name}</td>
                    <td>{value}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ) : null}

      <section aria-labelledby="deliveries">
        <h2 id="deliveries">Deliveries</h2>
        {act ? (
          <>
            <Message text={act.message?.text} kind={act.message?.kind} />
            <div class="actions" role="group" aria-label="Replay this event">
              <ActionButton action={`/console/events/${v.id}/replay`} csrf={act.csrf} label="Replay to all targets" />
              {act.endpoints.map((e) => (
                <ActionButton
                  action={`/console/events/${v.id}/replay`}
                  csrf={act.csrf}
                  label={`Replay to ${e}`}
                  fields={{ endpoint: e }}
                  class="secondary"
                />
              ))}
            </div>
          </>
        ) : null}
        {v.deliveries.length ? (
          v.deliveries.map((d) => (
            <article aria-label={`Delivery to ${d.endpoint}`}>
              <h3>
                {d.endpoint}: {d.state}
              </h3>
              {act && (RETRYABLE.has(d.state) || DISCARDABLE.has(d.state)) ? (
                <div class="actions" role="group" aria-label={`Delivery ${d.id}`}>
                  {RETRYABLE.has(d.state) ? (
                    <ActionButton action={`/console/deliveries/${d.id}/retry`} csrf={act.csrf} label="Retry" />
                  ) : null}
                  {DISCARDABLE.has(d.state) ? (
                    <ActionButton
                      action={`/console/deliveries/${d.id}/discard`}
                      csrf={act.csrf}
                      label="Discard"
                      class="secondary"
                    />
                  ) : null}
                </div>
              ) : null}
              <Facts
                rows={[
                  ["Delivery", d.id],
                  ["Route", d.route],
                  ["Decision", d.decision],
                  ["Last status", d.lastStatus === null ? null : String(d.lastStatus)],
                  ["Last error", d.lastError],
                ]}
              />
              {d.attempts.length ? (
                <div class="table-wrap">
                  <table>
                    <caption class="muted">Attempts</caption>
                    <thead>
                      <tr>
                        <th scope="col">#</th>
                        <th scope="col">Started</th>
                        <th scope="col">Took</th>
                        <th scope="col">Status</th>
                        <th scope="col">Error</th>
                      </tr>
                    </thead>
                    <tbody>
                      {d.attempts.map((a) => (
                        <tr>
                          <td>{a.attempt}</td>
                          <td>{a.startedAt}</td>
                          <td>{a.latencyMs} ms</td>
                          <td>{a.status ?? ""}</td>
                          <td>{a.error ?? ""}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              ) : (
                <p class="muted">No attempt yet.</p>
              )}
            </article>
          ))
        ) : (
          <p class="muted">No delivery: no route sent this event anywhere (yet).</p>
        )}
      </section>

      <section aria-labelledby="trace">
        <h2 id="trace">Trace</h2>
        <Timeline spans={v.trace} />
      </section>
    </Layout>
  );
}
