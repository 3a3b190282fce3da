import { closest } from "../errors/index.ts";

/**
 * The fields a route's `match` or a policy's `when` may name (docs/envelope.md, docs/desired-state.md):
 * the envelope's own, the fields of `data` of every channel (also without the `data.` prefix, as
 * docs/desired-state.md writes `auth.dmarc`), for policies the action's (`target`, `tool`, `action`, `args.*`),
 * and for routes their own `binding` and `sender`. A misspelt field would never match, silently disabling a quarantine or an approval
 * gate: validation refuses it with the nearest known name.
 *
 * A node lists the keys below it; `ANY` lets anything below it (a webhook's JSON, headers, lists).
 */
/**
 * Dotted segments a `when` or `match` key may have (`data.auth.dmarc` has 3). The engine's walk is
 * a loop, not a recursion, but the bound keeps every evaluator over operator input shallow
 * (docs/guarantees.md, 9); validation refuses deeper keys, and a deeper one never matches.
 */
export const MAX_FIELD_DEPTH = 16;

const ANY = "*" as const;
type Node = { readonly [key: string]: Node | typeof ANY | true };

const PERSON: Node = { name: true, address: true };

/** `data`'s fields, across channels (mail, webhook, sms / voice). */
const DATA: Node = {
  // mail
  from: PERSON,
  sender: PERSON,
  to: ANY,
  cc: ANY,
  reply_to: ANY,
  subject: true,
  date: true,
  message_id: true,
  in_reply_to: true,
  references: ANY,
  agents: ANY,
  tags: ANY,
  text: true,
  html: true,
  attachments: ANY,
  headers: ANY,
  size: true,
  auth: { spf: true, dkim: true, dmarc: true, arc: true },
  auth_details: ANY,
  parse_warnings: ANY,
  // webhook
  content_type: true,
  body: true,
  body_base64: true,
  json: ANY,
  json_error: true,
  // sms / voice (Telnyx)
  media: ANY,
  call_control_id: true,
  call_session_id: true,
  direction: true,
  state: true,
  hangup_cause: true,
  occurred_at: true,
  telnyx: ANY,
};

const SOURCE: Node = {
  binding: true,
  remote_ip: true,
  helo: true,
  queue_id: true,
  mail_from: true,
  rcpt_to: ANY,
  tls: true,
  scheme: true,
  delivery_id: true,
  headers: ANY,
  provider: true,
  event_id: true,
};

const ENVELOPE: Node = {
  id: true,
  version: true,
  type: true,
  tenant: true,
  agent: true,
  channel: true,
  source: SOURCE,
  received_at: true,
  trace_id: true,
  idempotency_key: true,
  data: DATA,
};

const ACTION: Node = { target: true, tool: true, action: true, args: ANY };
/** A route's own keys (src/route/route.ts): the binding that took the event, and the mail's sender address. */
const ROUTE: Node = { binding: true, sender: true };

/**
 * Why `field` names nothing an event (or, with `action`, a policy's action) has, with the nearest
 * known name; null when it is a known field. `auth.dmarc` is `data.auth.dmarc`.
 */
export function unknownField(field: string, opts: { action: boolean; route?: boolean }): string | null {
  const parts = field.split(".");
  const top: Node = { ...ENVELOPE, ...DATA, ...(opts.action ? ACTION : {}), ...(opts.route ? ROUTE : {}) };
  let node: Node | typeof ANY | true = top;
  const path: string[] = [];
  for (const part of parts) {
    if (node === ANY) return null;
    if (node === true) return `${path.join(".")} has no fields below it (${field})`;
    const next: Node | typeof ANY | true | undefined = Object.hasOwn(node, part) ? node[part] : undefined;
    if (next === undefined) {
      const near = closest(part, Object.keys(node));
      const where = path.length ? `${path.join(".")} has no field '${part}'` : `no event field '${part}'`;
      return `${where}${near ? `: did you mean '${[...path, near].join(".")}'?` : ""}`;
    }
    path.push(part);
    node = next;
  }
  return null;
}
