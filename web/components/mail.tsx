/** @jsxImportSource hono/jsx */

/** The parts of a mail that the event page and the inbox's message page both show. */

/** A verdict's colour class: pass, fail, or anything else (none, neutral, temperror, …). */
export const verdictClass = (v: string) =>
  v === "pass" ? "verdict-pass" : v === "fail" ? "verdict-fail" : "verdict-other";

/** Sender-auth verdicts (SPF, DKIM, DMARC, ARC) as stored on the event, one row each. */
export function AuthVerdicts(props: { auth: readonly { check: string; verdict: string; detail: string }[] }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Check</th>
            <th scope="col">Verdict</th>
            <th scope="col">Detail</th>
          </tr>
        </thead>
        <tbody>
          {props.auth.map((a) => (
            <tr>
              <td>{a.check.toUpperCase()}</td>
              <td class={verdictClass(a.verdict)}>{a.verdict}</td>
              <td>{a.detail}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The attachments, each a download link with its type and size. */
export function Attachments(props: {
  items: readonly { filename: string; contentType: string; size: number; href: string }[];
}) {
  return (
    <ul>
      {props.items.map((a) => (
        <li>
          <a href={a.href} download="">
            {a.filename || "(no name)"}
          </a>{" "}
          <span class="muted">
            ({a.contentType}, {a.size} bytes)
          </span>
        </li>
      ))}
    </ul>
  );
}
