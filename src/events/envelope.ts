import { newId } from "../core/ids.ts";
import { isoTime } from "../core/iso-time.ts";

/**
 * The canonical event envelope (docs/envelope.md), version 1. Every ingress normalizes into it; routing,
 * policy and delivery read only it. docs/envelope.md documents each field.
 */
export const ENVELOPE_VERSION = 1;

export const EVENT_TYPES = [
  "email.received",
  "webhook.received",
  "sms.received",
  "voice.call.initiated",
  "voice.call.answered",
  "voice.call.hangup",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export const CHANNELS = ["email", "webhook", "sms", "voice"] as const;
export type Channel = (typeof CHANNELS)[number];

export interface Envelope {
  id: string;
  version: number;
  type: EventType;
  tenant: string;
  agent: string | null;
  channel: Channel;
  source: { binding: string; remote_ip?: string; helo?: string; [k: string]: unknown };
  received_at: string;
  trace_id: string;
  idempotency_key: string | null;
  data: Record<string, unknown>;
}

/** One step of an event's way through the appliance (docs/architecture.md): shown as a timeline. */
export interface Span {
  name: string;
  start: string;
  duration_ms: number;
  outcome: "ok" | "error" | "skipped";
  detail?: string;
}

/**
 * The one way an envelope is made: a new `evt_` id for the time it was received, the current
 * version, and a trace id from the id of what it came in as (a mail's `msg_…`, shared by the
 * events one message makes for several tenants), or from its own id.
 */
export function newEnvelope(
  fields: Omit<Envelope, "id" | "version" | "received_at" | "trace_id" | "agent"> & { agent?: string | null },
  at: number,
  traceOf?: string,
): Envelope {
  const id = newId("evt", at);
  // Written out rather than spread from `fields`: a literal of one shape is built without the
  // spread's property-by-property copy, and JSON.stringify, which every event meets at its commit,
  // writes it in four fifths of the time (docs/performance.md, "Night of 2026-12-08"). The keys keep the order
  // the spread gave them.
  return {
    id,
    version: ENVELOPE_VERSION,
    agent: fields.agent ?? null,
    received_at: isoTime(at),
    trace_id: `T-${(traceOf ?? id).slice(4)}`,
    type: fields.type,
    tenant: fields.tenant,
    channel: fields.channel,
    source: fields.source,
    idempotency_key: fields.idempotency_key,
    data: fields.data,
  };
}

/**
 * The one way a span is made: `ms` milliseconds from `at` (ms since the epoch), the duration kept
 * to the microsecond, a detail only when there is one.
 */
export function spanOf(name: string, at: number, ms: number, outcome: Span["outcome"] = "ok", detail?: string): Span {
  const span: Span = { name, start: isoTime(at), duration_ms: Math.round(ms * 1000) / 1000, outcome };
  if (detail) span.detail = detail;
  return span;
}

/** A span from `at` (the wall clock) and `t0` (performance.now() then) to now. */
export const spanSince = (
  name: string,
  at: number,
  t0: number,
  outcome: Span["outcome"] = "ok",
  detail?: string,
): Span => spanOf(name, at, performance.now() - t0, outcome, detail);

/**
 * One line that says what an event is, for people deciding about it (an approval) or scanning a
 * list: a mail's sender and subject, an SMS's sender and text, a call's number, a webhook's
 * binding and its JSON's `action` / `type` / `kind` / `event` when it has one. Bounded: never
 * more than about 160 characters, whatever the event holds.
 */
export function summarize(e: Pick<Envelope, "type" | "channel" | "source" | "data">): string {
  const data = (e.data ?? {}) as Record<string, unknown>;
  const text = (v: unknown, max: number) => {
    const s = typeof v === "string" ? v.replace(/\s+/g, " ").trim() : "";
    return s.length > max ? `${s.slice(0, max - 1)}…` : s;
  };
  const person = (v: unknown) =>
    text(
      v && typeof v === "object" ? ((v as { address?: unknown }).address ?? (v as { name?: unknown }).name) : v,
      60,
    ) || "?";
  switch (e.channel) {
    case "email":
      return `mail from ${person(data.from)}: "${text(data.subject, 80)}"`;
    case "sms":
      return `SMS from ${person(data.from)}: "${text(data.text, 80)}"`;
    case "voice":
      return `call from ${person(data.from)} (${e.type})`;
    default: {
      const json = (data.json ?? {}) as Record<string, unknown>;
      const what = ["action", "type", "kind", "event"]
        .map((k) => (typeof json[k] === "string" ? `${k} ${text(json[k], 40)}` : ""))
        .find(Boolean);
      const binding = (e.source as { binding?: unknown })?.binding;
      return `webhook to binding ${text(binding, 63) || "?"}${what ? `: ${what}` : ""}`;
    }
  }
}
