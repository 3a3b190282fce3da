import type { EventRow, EventView, TimelineSpan } from "../../web/index.ts";
import { timeline } from "../api/deliveries.ts";
import { type Envelope, type Span, summarize } from "../events/envelope.ts";
import type { AttemptRow, DeliveryRow, StoredEvent } from "../store/index.ts";

/** What the pages show of stored rows: text only, every value from outside kept as it came (the pages escape it). */

export const eventRow = (e: Envelope): EventRow => ({
  id: e.id,
  tenant: e.tenant,
  type: e.type,
  channel: e.channel,
  receivedAt: e.received_at,
  summary: summarize(e),
});

const text = (v: unknown): string =>
  v === null || v === undefined
    ? ""
    : typeof v === "string"
      ? v
      : typeof v === "object"
        ? JSON.stringify(v)
        : String(v);

/** `"Name" <address>` for each of a mail's `{name, address}` values. */
function people(v: unknown): string {
  const list = Array.isArray(v) ? v : v ? [v] : [];
  return list
    .map((p) => {
      if (!p || typeof p !== "object") return text(p);
      const { name, address } = p as { name?: unknown; address?: unknown };
      return name ? `${text(name)} <${text(address)}>` : text(address);
    })
    .join(", ");
}

function pairs(v: unknown): [string, string][] {
  if (Array.isArray(v)) return v.filter(Array.isArray).map((p) => [text(p[0]), text(p[1])]);
  if (v && typeof v === "object") return Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, text(x)]);
  return [];
}

const AUTH_CHECKS = ["spf", "dkim", "dmarc", "arc"] as const;

function authOf(data: Record<string, unknown>): EventView["auth"] {
  const auth = data.auth;
  if (!auth || typeof auth !== "object") return null;
  const details = (data.auth_details ?? {}) as Record<string, unknown>;
  return AUTH_CHECKS.filter((c) => (auth as Record<string, unknown>)[c] !== undefined).map((check) => ({
    check,
    verdict: text((auth as Record<string, unknown>)[check]),
    detail: details[check] === undefined ? "" : text(details[check]),
  }));
}

const decisionOf = (d: DeliveryRow["decision"]): string | null => {
  if (!d) return null;
  const parts = [d.effect, d.policy ? `policy ${text(d.policy)}` : "", d.reason ? `(${text(d.reason)})` : ""];
  return parts.filter(Boolean).map(text).join(" ");
};

const spanOf = (s: Span & { endpoint?: string }): TimelineSpan => ({
  name: s.name,
  startMs: Date.parse(s.start),
  durationMs: Number(s.duration_ms) || 0,
  outcome: s.outcome,
  ...(s.detail ? { detail: s.detail } : {}),
  ...(s.endpoint ? { endpoint: s.endpoint } : {}),
});

/** An event's page: envelope, verdicts, content, deliveries with their attempts, the trace. */
export function eventView(
  event: StoredEvent,
  deliveries: readonly { row: DeliveryRow; attempts: readonly AttemptRow[] }[],
): EventView {
  const e = event.envelope;
  const data = (e.data ?? {}) as Record<string, unknown>;
  const { headers: sourceHeaders, ...source } = (e.source ?? {}) as Record<string, unknown>;
  const email =
    e.channel === "email"
      ? {
          from: people(data.from),
          to: people(data.to),
          cc: people(data.cc),
          subject: text(data.subject),
          date: text(data.date),
          messageId: text(data.message_id),
          text: text(data.text),
          attachments: (Array.isArray(data.attachments) ? data.attachments : []).map((a) => {
            const x = (a ?? {}) as Record<string, unknown>;
            return { filename: text(x.filename), contentType: text(x.content_type), size: Number(x.size) || 0 };
          }),
          warnings: (Array.isArray(data.parse_warnings) ? data.parse_warnings : []).map(text),
        }
      : null;
  const webhook = e.channel === "webhook";
  const json = webhook
    ? data.json === null || data.json === undefined
      ? null
      : JSON.stringify(data.json, null, 2)
    : email
      ? null
      : JSON.stringify(data, null, 2);
  const body = webhook && json === null ? text(data.body ?? data.body_base64) : null;
  // The trace merges each delivery's task spans in by time, as GET /v1/events/:id shows it.
  const rows = deliveries.map((d) => d.row);
  return {
    id: e.id,
    type: e.type,
    tenant: e.tenant,
    agent: e.agent,
    channel: e.channel,
    receivedAt: e.received_at,
    traceId: e.trace_id,
    idempotencyKey: e.idempotency_key,
    source: Object.entries(source).map(([k, v]) => [k, text(v)]),
    headers: email ? pairs(data.headers) : pairs(sourceHeaders),
    email,
    auth: authOf(data),
    json,
    body,
    deliveries: deliveries.map(({ row, attempts }) => ({
      id: row.id,
      endpoint: row.endpoint,
      state: row.state,
      route: row.route,
      decision: decisionOf(row.decision),
      lastStatus: row.lastStatus,
      lastError: row.lastError,
      attempts: attempts.map((a) => ({
        attempt: a.attempt,
        startedAt: new Date(a.startedAt).toISOString(),
        latencyMs: a.latencyMs,
        status: a.status,
        error: a.error ?? a.errorClass,
      })),
    })),
    trace: timeline(event.trace, [...rows].reverse()).map(spanOf),
  };
}
