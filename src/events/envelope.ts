/**
 * The canonical event envelope (SPEC §9), version 1. Every ingress normalizes into it; routing,
 * policy and delivery read only it. docs/envelope.md documents each field.
 */
export const ENVELOPE_VERSION = 1;

export const EVENT_TYPES = ["email.received", "webhook.received", "sms.received", "voice.call.initiated", "voice.call.answered", "voice.call.hangup"] as const;
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

/** One step of an event's way through the appliance (SPEC §2): shown as a timeline. */
export interface Span {
  name: string;
  start: string;
  duration_ms: number;
  outcome: "ok" | "error" | "skipped";
  detail?: string;
}
