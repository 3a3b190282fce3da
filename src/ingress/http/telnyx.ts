import { Elysia } from "elysia";
import type { Clock } from "../../core/clock.ts";
import type { Metrics } from "../../core/metrics.ts";
import { ConfigCache } from "../../control/resources/cache.ts";
import type { BindingSpec } from "../../control/resources/specs.ts";
import { AppError } from "../../errors/index.ts";
import { type EventType, spanSince } from "../../events/envelope.ts";
import { utf8 } from "../../server/body.ts";
import type { Storage } from "../../store/index.ts";
import type { AcceptEvent } from "./accept.ts";
import { DEFAULT_MAX_BODY_BYTES, type IngressGuard } from "./guard.ts";

const notFound = () => new AppError("not_found", "not found");

/** Telnyx event types the appliance turns into events (docs/envelope.md); v1's `call_initiated` spelling too. */
const TELNYX_TYPES: Record<string, EventType> = {
  "message.received": "sms.received",
  "call.initiated": "voice.call.initiated",
  "call.answered": "voice.call.answered",
  "call.hangup": "voice.call.hangup",
};

const phone = (v: unknown): string | null =>
  typeof v === "string"
    ? v
    : typeof (v as { phone_number?: unknown })?.phone_number === "string"
      ? (v as { phone_number: string }).phone_number
      : null;

interface TelnyxWebhook {
  id: string | null;
  eventType: string;
  occurredAt: string | null;
  payload: Record<string, any>;
  /** The destination numbers. */
  to: string[];
}

/** The parts of a Telnyx webhook the ingress needs; v2 (`{data: {…}}`) and the v1 shape. */
export function parseTelnyx(body: Uint8Array): TelnyxWebhook | null {
  let json: any;
  try {
    json = JSON.parse(utf8(body));
  } catch {
    return null;
  }
  const ev = json?.data && typeof json.data === "object" && "event_type" in json.data ? json.data : json;
  if (!ev || typeof ev.event_type !== "string" || !ev.payload || typeof ev.payload !== "object") return null;
  const eventType = /^call_(initiated|answered|hangup)$/.test(ev.event_type)
    ? ev.event_type.replace("_", ".")
    : ev.event_type;
  const rawTo = ev.payload.to;
  const to = (Array.isArray(rawTo) ? rawTo.map(phone) : [phone(rawTo)]).filter((n): n is string => !!n);
  return {
    id: typeof ev.id === "string" ? ev.id : null,
    eventType,
    occurredAt: ev.occurred_at ?? ev.created_at ?? null,
    payload: ev.payload,
    to,
  };
}

/** Every telnyx binding's numbers (a number belongs to one binding of one tenant: validation says so). */
async function telnyxNumbers(storage: Storage): Promise<Map<string, { tenant: string; binding: BindingSpec }>> {
  const out = new Map<string, { tenant: string; binding: BindingSpec }>();
  for (const row of await storage.resources.list({ kind: "bindings", limit: 100_000 })) {
    const b = row.spec as BindingSpec;
    if (b.type === "telnyx") for (const n of b.numbers ?? []) out.set(n, { tenant: row.tenant, binding: b });
  }
  return out;
}

export interface TelnyxRouteDeps {
  storage: Storage;
  metrics: Metrics;
  clock: Clock;
  guard: IngressGuard;
  accept: AcceptEvent;
}

/**
 * POST /ingress/telnyx (docs/api.md): Telnyx messaging and voice webhooks for every tenant at one
 * address. The number a message or call is for names the tenant and binding, whose public key
 * then verifies the whole body; event types the appliance does not take are answered and dropped.
 */
export function telnyxRoute(deps: TelnyxRouteDeps) {
  const { metrics, clock, guard, accept } = deps;
  const { storage } = deps;
  // The number → binding map: read once per configuration change.
  const numbers = new ConfigCache(storage.resources, () => telnyxNumbers(storage));

  return new Elysia({ normalize: false }).post(
    "/ingress/telnyx",
    async ({ request, server, set }) => {
      const t0 = performance.now();
      const at = clock.now();
      const remote_ip = server?.requestIP(request)?.address ?? null;
      const context: Record<string, unknown> = { remote_ip };
      try {
        const body = await guard.body("telnyx", request, DEFAULT_MAX_BODY_BYTES, context);
        guard.admit("telnyx", remote_ip, context);
        // The number the message or call is for names the binding, whose key then verifies the
        // whole body: nothing read before verification is trusted beyond choosing the key.
        const parsed = parseTelnyx(body);
        if (!parsed)
          return guard.refuse(
            "telnyx",
            "bad_request",
            new AppError("invalid_input", "not a Telnyx webhook (JSON with data.event_type and data.payload)"),
            context,
          );
        const byNumber = await numbers.get("");
        const owner = parsed.to.map((n) => byNumber.get(n)).find((o) => o !== undefined) ?? null;
        if (!owner) return guard.refuse("telnyx", "not_found", notFound(), { ...context, to: parsed.to });
        const { tenant, binding } = owner;
        Object.assign(context, { tenant, binding: binding.name });
        const verifyStarted = performance.now();
        const verdict = await guard.verify(tenant, binding, request.headers, body);
        if (!verdict.ok) return guard.unverified("telnyx", verdict, remote_ip, context);
        guard.charge("telnyx", binding, `${tenant}/${binding.name}`, context);
        const key = guard.keyOf("telnyx", parsed.id, context);
        const type = TELNYX_TYPES[parsed.eventType];
        if (!type) {
          metrics.ingressRequests.inc({ channel: "telnyx", outcome: "ignored" });
          return { ignored: parsed.eventType };
        }
        const p = parsed.payload;
        const sms = type === "sms.received";
        return await accept(
          "telnyx",
          {
            type,
            tenant,
            channel: sms ? "sms" : "voice",
            source: {
              binding: binding.name,
              remote_ip: remote_ip ?? undefined,
              provider: "telnyx",
              event_id: parsed.id,
            },
            idempotency_key: key,
            data: sms
              ? {
                  from: phone(p.from),
                  to: parsed.to,
                  text: typeof p.text === "string" ? p.text : "",
                  media: Array.isArray(p.media) ? p.media : [],
                  occurred_at: parsed.occurredAt,
                  telnyx: p,
                }
              : {
                  from: phone(p.from),
                  to: parsed.to[0],
                  call_control_id: p.call_control_id ?? null,
                  call_session_id: p.call_session_id ?? null,
                  direction: p.direction ?? null,
                  state: p.state ?? null,
                  hangup_cause: p.hangup_cause ?? null,
                  occurred_at: parsed.occurredAt,
                  telnyx: p,
                },
          },
          at,
          [spanSince("ingress.verify", at, verifyStarted)],
          set,
        );
      } finally {
        metrics.ingressSeconds.observe({ channel: "telnyx" }, (performance.now() - t0) / 1000);
      }
    },
    { parse: "none" },
  );
}
