/** @jsxImportSource hono/jsx */
import { Pager } from "../components/events-table.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";

/** One approval with what it is about, as text (every value from outside escaped by the renderer). */
export interface ApprovalItem {
  id: string;
  tenant: string;
  state: string;
  /** "dispatch to crm", "tool.call refund". */
  action: string;
  /** The policy rule that asked: "policy guard v2, rule #1 refunds: refunds need a person". */
  rule: string;
  event: { id: string; type: string; sender: string | null; subject: string | null; summary: string } | null;
  expiresAt: string;
  /** "12 min left", "expired". */
  timeLeft: string;
  onExpiry: string;
  decidedBy: string | null;
  decidedAt: string | null;
  reason: string | null;
}

export interface ApprovalsView {
  pending: readonly ApprovalItem[];
  decided: readonly ApprovalItem[];
  pendingOlder: string | null;
  decidedOlder: string | null;
  newest: string | null;
  message: { text: string; kind: "error" | "info" } | null;
}

function Context(props: { a: ApprovalItem }) {
  const a = props.a;
  return (
    <dl class="fields">
      <dt>Tenant</dt>
      <dd>{a.tenant}</dd>
      <dt>Action</dt>
      <dd>{a.action}</dd>
      <dt>Asked by</dt>
      <dd>{a.rule}</dd>
      {a.event ? (
        <>
          <dt>Event</dt>
          <dd>
            <a href={`/console/events/${a.event.id}`}>{a.event.type}</a>
          </dd>
          {a.event.sender !== null ? (
            <>
              <dt>Sender</dt>
              <dd>{a.event.sender}</dd>
            </>
          ) : null}
          {a.event.subject !== null ? (
            <>
              <dt>Subject</dt>
              <dd>{a.event.subject}</dd>
            </>
          ) : (
            <>
              <dt>Summary</dt>
              <dd>{a.event.summary}</dd>
            </>
          )}
        </>
      ) : null}
    </dl>
  );
}

export function ApprovalsPage(props: { chrome: Chrome; view: ApprovalsView }) {
  const v = props.view;
  const csrf = props.chrome.csrf ?? "";
  return (
    <Layout chrome={props.chrome} title="Approvals">
      <Message text={v.message?.text} kind={v.message?.kind} />
      <section aria-labelledby="pending">
        <h2 id="pending">Waiting for a decision</h2>
        {v.pending.length ? (
          v.pending.map((a) => (
            <article class="card" aria-label={`Approval ${a.id}`}>
              <h3>
                {a.action} <span class="muted">({a.tenant})</span>
              </h3>
              <Context a={a} />
              <p>
                Expires {a.expiresAt}: <strong>{a.timeLeft}</strong>, then{" "}
                {a.onExpiry === "approve" ? "approved" : "denied"}.
              </p>
              <div class="actions">
                <form method="post" action={`/console/approvals/${a.id}/approve`} class="filters">
                  <CsrfField token={csrf} />
                  <label>
                    Reason (optional)
                    <input type="text" name="reason" maxlength={1000} id={`approve-reason-${a.id}`} />
                  </label>
                  <div>
                    <button type="submit">Approve</button>
                  </div>
                </form>
                <form method="post" action={`/console/approvals/${a.id}/deny`} class="filters">
                  <CsrfField token={csrf} />
                  <label>
                    Reason for denying
                    <input type="text" name="reason" maxlength={1000} required id={`deny-reason-${a.id}`} />
                  </label>
                  <div>
                    <button type="submit" class="secondary">
                      Deny
                    </button>
                  </div>
                </form>
              </div>
            </article>
          ))
        ) : (
          <p class="muted">Nothing is waiting.</p>
        )}
        {v.pendingOlder ? (
          <p>
            <a href={v.pendingOlder}>More waiting</a>
          </p>
        ) : null}
      </section>
      <section aria-labelledby="decided">
        <h2 id="decided">Decided</h2>
        {v.decided.length ? (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Approval</th>
                  <th scope="col">Tenant</th>
                  <th scope="col">Action</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">By</th>
                  <th scope="col">When</th>
                  <th scope="col">Why</th>
                </tr>
              </thead>
              <tbody>
                {v.decided.map((a) => (
                  <tr>
                    <td>{a.id}</td>
                    <td>{a.tenant}</td>
                    <td>
                      {a.action}
                      {a.event ? (
                        <>
                          {" "}
                          <a href={`/console/events/${a.event.id}`}>event</a>
                        </>
                      ) : null}
                    </td>
                    <td>{a.state}</td>
                    <td>{a.decidedBy ?? ""}</td>
                    <td>{a.decidedAt ?? ""}</td>
                    <td>{a.reason ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">None yet.</p>
        )}
        <Pager newest={v.newest} older={v.decidedOlder} />
      </section>
    </Layout>
  );
}
