/** @jsxImportSource hono/jsx */
import { Facts } from "../components/facts.tsx";
import { type Chrome, Layout } from "../components/layout.tsx";
import { Attachments, AuthVerdicts, verdictClass } from "../components/mail.tsx";

/** One mail of a tenant's inbox, as its reader sees it (docs/console.md#the-inbox). */
export interface MessageView {
  id: string;
  tenant: string;
  receivedAt: string;
  from: string;
  to: string;
  cc: string;
  subject: string;
  date: string;
  /** Sender-auth verdicts (SPF, DKIM, DMARC, ARC) as stored on the event. */
  auth: readonly { check: string; verdict: string; detail: string }[];
  text: string;
  /** The sanitized HTML part, shown in a sandboxed frame from its own URL; null: the mail has none. */
  html: {
    src: string;
    /** The same frame with remote images allowed; null: the HTML has no remote image. */
    withImages: string | null;
  } | null;
  attachments: readonly { filename: string; contentType: string; size: number; href: string }[];
  /** Where the event was delivered: each delivery's endpoint and state. */
  deliveries: readonly { endpoint: string; state: string }[];
  /** The event's page in the console, for a reader who may open it. */
  eventHref: string | null;
  inboxHref: string;
}

const FRAME = "message-html";

export function MessagePage(props: { chrome: Chrome; view: MessageView }) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title={v.subject ? v.subject : "(no subject)"}>
      <p>
        <a href={v.inboxHref}>Back to the inbox of {v.tenant}</a>
        {v.eventHref ? (
          <>
            {" · "}
            <a href={v.eventHref}>Event page</a>
          </>
        ) : null}
      </p>
      <Facts
        rows={[
          ["From", v.from],
          ["To", v.to],
          ["Cc", v.cc],
          ["Subject", v.subject],
          ["Date", v.date],
          ["Received", v.receivedAt],
        ]}
      />

      <section aria-labelledby="auth">
        <h2 id="auth">Sender authentication</h2>
        {v.auth.length ? <AuthVerdicts auth={v.auth} /> : <p class="muted">No verdicts stored.</p>}
      </section>

      <section aria-labelledby="text">
        <h2 id="text">Text</h2>
        {v.text ? <pre>{v.text}</pre> : <p class="muted">No text part.</p>}
      </section>

      {v.html ? (
        <section aria-labelledby="html">
          <h2 id="html">HTML</h2>
          <p class="muted">
            Sanitized, in a sandbox where nothing runs. Remote images are blocked
            {v.html.withImages ? (
              <>
                {": "}
                <a href={v.html.withImages} target={FRAME}>
                  Show remote images
                </a>{" "}
                (their senders learn that the mail was read).
              </>
            ) : (
              "."
            )}
          </p>
          <iframe class="message-html" name={FRAME} title="The message's HTML part" sandbox="" src={v.html.src} />
        </section>
      ) : null}

      <section aria-labelledby="attachments">
        <h2 id="attachments">Attachments</h2>
        {v.attachments.length ? <Attachments items={v.attachments} /> : <p class="muted">None.</p>}
      </section>

      <section aria-labelledby="deliveries">
        <h2 id="deliveries">Delivered to</h2>
        {v.deliveries.length ? (
          <ul>
            {v.deliveries.map((d) => (
              <li>
                {d.endpoint}:{" "}
                <span class={verdictClass(d.state === "delivered" ? "pass" : d.state === "dead" ? "fail" : d.state)}>
                  {d.state}
                </span>
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">No delivery: no route sent this mail anywhere (yet).</p>
        )}
      </section>
    </Layout>
  );
}
