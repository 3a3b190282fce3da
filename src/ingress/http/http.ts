import { Elysia } from "elysia";
import type { Config } from "../../config/index.ts";
import { type Logger, REDACTED } from "../../core/log.ts";
import type { Metrics } from "../../core/metrics.ts";
import { RateLimiter } from "../rate-limit.ts";
import { ConfigCache, SpecCache } from "../../control/resources/cache.ts";
import { AppError } from "../../errors/index.ts";
import { jsonNestsDeeper, MAX_JSON_DEPTH, readBody } from "../../server/body.ts";
import { type Envelope, type EventType, newEnvelope, type Span, spanSince } from "../../events/envelope.ts";
import { commitRouted, type EventRouting, insertEventTx } from "../../events/handoff.ts";
import { type BindingSpec, NAME_PATTERN } from "../../control/resources/specs.ts";
import type { SqliteStorage } from "../../store/index.ts";
import { LeasedSecrets } from "../../vault/leased.ts";
import type { Vault } from "../../vault/vault.ts";
import { idempotencyKey } from "./idempotency.ts";
import { credentialHeaders, type VerifyConfig, type VerifyResult, verifyRequest } from "./verify.ts";

/**
 * HTTP ingress (docs/api.md): signed webhooks from LAN systems at /ingress/webhook/:tenant/:binding
 * and Telnyx messaging and voice webhooks at /ingress/telnyx. The order of the checks is the
 * order of their cost, and nothing is written until the request has passed all of them:
 *
 *   binding exists (404) → body size (413) → this address's failed verifications (429) → backlog
 *   (503) → content type (415) → signature over the raw bytes (401) → the binding's rate (429)
 *   → delivery id (400) → event + outbox entry in one group commit → 202
 *
 * Two budgets, so that nobody can spend someone else's: a request that fails verification
 * takes a token from its source address's bucket (ingress_auth_failures_per_address), and an
 * address whose bucket is empty is answered 429 before any signature is computed again, which
 * bounds the expensive work a forger can cause; only a verified request takes from the binding's
 * bucket (rate_per_minute), so forged requests never lock out the binding's real sender.
 *
 * A repeat of a delivery (its provider id, or Idempotency-Key) answers 200 with the first
 * event's id and stores nothing (the events table is unique per tenant, binding and key, so
 * concurrent duplicates race to exactly one event; idempotency.ts says how an id becomes a key). The event is routed in the unit of work that
 * commits it, or carries an `event.received` outbox entry to the router (src/events/handoff.ts).
 */

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** How often the queue's depth is sampled for the high-water check. */
const BACKLOG_SAMPLE_MS = 500;
/**
 * Request headers whose values never reach an envelope, whatever the binding: they carry
 * credentials. They, and the headers the binding reads its credential from, are kept by name
 * with the value "[redacted]" (a bearer token sent in the wrong header is still a secret).
 */
const PRIVATE_HEADERS = ["authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"];
const NAME = new RegExp(NAME_PATTERN);
const notFound = () => new AppError("not_found", "not found");

export interface IngressDeps {
  config: Config;
  storage: SqliteStorage;
  vault: Vault;
  metrics: Metrics;
  log: Logger;
  /** Routing at the commit; without it events reach the router through the outbox. */
  routing?: EventRouting;
  now?: () => number;
}

/** The queue's depth, sampled in the background: the check must not cost a query per request. */
class Backlog {
  private depth = 0;
  private sampledAt = 0;
  private sampling = false;

  constructor(
    private readonly storage: SqliteStorage,
    private readonly now: () => number,
  ) {}

  current(): number {
    if (!this.sampling && this.now() - this.sampledAt > BACKLOG_SAMPLE_MS) {
      this.sampling = true;
      // The backlog alone: counting the finished jobs kept for the retention window would stall
      // the event loop in proportion to them (30 ms at 100,000), twice a second.
      this.storage.queue
        .backlog()
        .then((n) => (this.depth = n))
        .catch(() => {})
        .finally(() => {
          this.sampledAt = this.now();
          this.sampling = false;
        });
    }
    return this.depth;
  }
}

const isJsonType = (type: string | null) => !!type && /^application\/([\w.+-]+\+)?json\b/i.test(type.trim());
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The body as the envelope keeps it: byte-exact text when it is UTF-8, base64 when not, and parsed when JSON. */
function bodyData(bytes: Uint8Array, contentType: string | null): Record<string, unknown> {
  let text: string | null = null;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    // not UTF-8: binary
  }
  const out: Record<string, unknown> = { content_type: contentType, size: bytes.byteLength };
  if (text === null) out.body_base64 = Buffer.from(bytes).toString("base64");
  else out.body = text;
  if (text !== null && isJsonType(contentType)) {
    // Checked before parsing: a 100,000-deep body parses, then overflows the stack wherever it is
    // walked (the envelope's JSON.stringify answered 500 after a 1 s stall).
    if (jsonNestsDeeper(text, MAX_JSON_DEPTH)) {
      out.json = null;
      out.json_error = `nested more than ${MAX_JSON_DEPTH} levels deep`;
    } else {
      try {
        out.json = JSON.parse(text);
      } catch {
        out.json = null;
      }
    }
  }
  return out;
}

/**
 * The request's headers for the envelope (at most 16 KiB), credentials redacted: the private
 * ones, the binding's credential headers, and any header that carries the binding's secret (a
 * token sent twice, once in a header the binding does not read). Runs after verification only.
 */
function headersOf(
  request: Request,
  verify: NonNullable<BindingSpec["verify"]>,
  secret: string | undefined,
): Record<string, string> {
  const redacted = new Set([...PRIVATE_HEADERS, ...credentialHeaders(verify)]);
  const out: Record<string, string> = {};
  let size = 0;
  request.headers.forEach((sent, name) => {
    const value = redacted.has(name) || (secret && sent.includes(secret)) ? REDACTED : sent;
    size += name.length + value.length;
    if (size <= 16 * 1024) out[name] = value;
  });
  return out;
}

const span = spanSince;

export function ingressRoutes(deps: IngressDeps) {
  const { storage, metrics, log, config } = deps;
  // Bindings by tenant/name, and the Telnyx number → binding map: read once per configuration change.
  const bindings = new SpecCache<BindingSpec>(storage.resources, "bindings");
  const numbers = new ConfigCache(storage.resources, () => telnyxNumbers(storage));
  const now = deps.now ?? Date.now;
  const secrets = new LeasedSecrets(deps.vault, now);
  const backlog = new Backlog(storage, now);
  const limiters = new Map<number, RateLimiter>();
  const limiterFor = (perMinute: number) => {
    let l = limiters.get(perMinute);
    if (!l) limiters.set(perMinute, (l = new RateLimiter(perMinute)));
    return l;
  };

  /** A refusal: counted, logged with its reason (never a secret), and thrown as problem+json. */
  const refuse = (channel: string, outcome: string, e: AppError, context: Record<string, unknown>): never => {
    metrics.ingressRequests.inc({ channel, outcome });
    log.warn("ingress refused", { channel, outcome, reason: e.detail, ...context });
    throw e;
  };

  // Failed verifications by source address: their own budget, never the binding's.
  const failures = new RateLimiter(config.ingressAuthFailuresPerAddress);
  const addressKey = (remote_ip: string | null) => remote_ip ?? "unknown";
  const retryAfter = (limiter: RateLimiter, key: string) => Math.max(1, Math.ceil(limiter.retryAfterMs(key) / 1000));

  /** Before any verification: an address out of failure budget, a backlog (the checks every binding shares). */
  const admit = (channel: string, remote_ip: string | null, context: Record<string, unknown>) => {
    const address = addressKey(remote_ip);
    if (failures.retryAfterMs(address) > 0) {
      refuse(
        channel,
        "rate_limited",
        new AppError("rate_limited", "too many requests from this address failed verification", {
          retryAfter: retryAfter(failures, address),
        }),
        { ...context, why: "auth_failures" },
      );
    }
    if (backlog.current() >= config.ingressQueueHighWater) {
      refuse(
        channel,
        "backlog",
        new AppError("unavailable", "the appliance is catching up with its backlog", { retryAfter: 5 }),
        context,
      );
    }
  };

  /** After verification: the binding's budget, spent by verified requests only. */
  const charge = (channel: string, binding: BindingSpec, key: string, context: Record<string, unknown>) => {
    const limiter = limiterFor(binding.rate_per_minute ?? config.ingressRatePerBinding);
    if (!limiter.take(key))
      refuse(
        channel,
        "rate_limited",
        new AppError("rate_limited", "too many requests for this binding", { retryAfter: retryAfter(limiter, key) }),
        context,
      );
  };

  /** A verification that failed: counted against the sender's address (not when the binding cannot verify at all), then 401. */
  const unverified = (
    channel: string,
    verdict: Extract<VerifyResult, { ok: false }>,
    remote_ip: string | null,
    context: Record<string, unknown>,
  ): never => {
    const misconfigured = verdict.reason === "misconfigured";
    if (!misconfigured) failures.take(addressKey(remote_ip));
    return refuse(
      channel,
      misconfigured ? "misconfigured" : "unauthenticated",
      new AppError(
        "unauthenticated",
        misconfigured
          ? "the binding cannot verify requests; see the appliance's log"
          : "the request's signature does not verify",
      ),
      { ...context, why: verdict.reason, detail: verdict.detail },
    );
  };

  /** The stored key for a verified delivery id: 400 for one over the documented length. */
  const keyOf = (channel: string, deliveryId: string | null, context: Record<string, unknown>): string | null => {
    if (deliveryId === null) return null;
    try {
      return idempotencyKey(deliveryId);
    } catch (e) {
      return refuse(channel, "bad_request", e as AppError, context);
    }
  };

  /**
   * Check a signature against every value of the binding's secret (the current one, and one in
   * its grace period); a verified result says which value verified, for redaction.
   */
  const verify = async (
    tenant: string,
    binding: BindingSpec,
    headers: Headers,
    body: Uint8Array,
  ): Promise<VerifyResult & { secret?: string }> => {
    const v = binding.verify!;
    const base: VerifyConfig = { scheme: v.scheme, publicKey: v.public_key, header: v.header, encoding: v.encoding };
    if (!v.secret) return verifyRequest(base, headers, body, now());
    let last: VerifyResult = { ok: false, reason: "misconfigured", detail: "the binding's secret has no value" };
    for (const secret of await secrets.values(v.secret, tenant, `ingress:${tenant}/${binding.name}`)) {
      last = verifyRequest({ ...base, secret }, headers, body, now());
      if (last.ok) return { ...last, secret };
    }
    return last;
  };

  /** Commit the event and its routing (or hand-off to routing); answer 202, or 200 with the first event's id for a repeat. */
  const commit = async (channel: string, envelope: Envelope, trace: Span[], set: { status?: unknown }) => {
    const result = await commitRouted(deps.routing, [envelope], (plan) => {
      const t0 = performance.now();
      const startedAt = now();
      return storage.committer.run((tx) =>
        insertEventTx(storage, tx, envelope, trace, plan, [span("ingress.commit", startedAt, t0)]),
      );
    });
    metrics.ingressRequests.inc({ channel, outcome: result.created ? "accepted" : "duplicate" });
    set.status = result.created ? 202 : 200;
    return result.created ? { id: result.id } : { id: result.id, duplicate: true };
  };

  const envelope = (
    fields: Pick<Envelope, "type" | "tenant" | "channel" | "source" | "idempotency_key" | "data">,
    at: number,
  ): Envelope => newEnvelope(fields, at);

  return new Elysia({ normalize: false })
    .post(
      "/ingress/webhook/:tenant/:binding",
      async ({ request, params, server, set }) => {
        const t0 = performance.now();
        const at = now();
        const { tenant, binding: name } = params;
        const remote_ip = server?.requestIP(request)?.address ?? null;
        const context = { tenant, binding: name, remote_ip };
        try {
          // One answer for an unknown tenant and an unknown binding: tenants cannot be probed.
          const binding = NAME.test(tenant) && NAME.test(name) ? await bindings.get(tenant, name) : null;
          if (!binding || binding.type !== "webhook" || !binding.verify)
            return refuse("webhook", "not_found", notFound(), context);
          const body = await readBody(request, binding.max_body_bytes ?? DEFAULT_MAX_BODY_BYTES).catch((e: AppError) =>
            refuse("webhook", e.kind === "too_large" ? "too_large" : "bad_request", e, context),
          );
          admit("webhook", remote_ip, context);
          const contentType = request.headers.get("content-type");
          if (binding.require_json && !isJsonType(contentType)) {
            refuse(
              "webhook",
              "unsupported_media_type",
              new AppError("unsupported_media_type", "this binding takes JSON (Content-Type: application/json)"),
              context,
            );
          }
          const verifyStarted = performance.now();
          const verdict = await verify(tenant, binding, request.headers, body);
          if (!verdict.ok) return unverified("webhook", verdict, remote_ip, context);
          const verifySpan = span("ingress.verify", at, verifyStarted);
          charge("webhook", binding, `${tenant}/${name}`, context);
          const deliveryId = verdict.deliveryId ?? request.headers.get("idempotency-key");
          const key = keyOf("webhook", deliveryId, context);
          const data = bodyData(body, contentType);
          if (binding.require_json && data.json === null) {
            const why = data.json_error
              ? new AppError("invalid_input", `the body's JSON is ${data.json_error}`, {
                  errors: [{ field: "/", message: String(data.json_error) }],
                })
              : new AppError("invalid_input", "the body is not valid JSON");
            refuse("webhook", "bad_request", why, context);
          }
          const event = envelope(
            {
              type: "webhook.received",
              tenant,
              channel: "webhook",
              source: {
                binding: name,
                remote_ip: remote_ip ?? undefined,
                scheme: binding.verify.scheme,
                delivery_id: deliveryId,
                headers: headersOf(request, binding.verify, verdict.secret),
              },
              idempotency_key: key,
              data,
            },
            at,
          );
          return await commit("webhook", event, [verifySpan], set);
        } finally {
          metrics.ingressSeconds.observe({ channel: "webhook" }, (performance.now() - t0) / 1000);
        }
      },
      { parse: "none" },
    )
    .post(
      "/ingress/telnyx",
      async ({ request, server, set }) => {
        const t0 = performance.now();
        const at = now();
        const remote_ip = server?.requestIP(request)?.address ?? null;
        const context: Record<string, unknown> = { remote_ip };
        try {
          const body = await readBody(request, DEFAULT_MAX_BODY_BYTES).catch((e: AppError) =>
            refuse("telnyx", e.kind === "too_large" ? "too_large" : "bad_request", e, context),
          );
          admit("telnyx", remote_ip, context);
          // The number the message or call is for names the binding, whose key then verifies the
          // whole body: nothing read before verification is trusted beyond choosing the key.
          const parsed = parseTelnyx(body);
          if (!parsed)
            return refuse(
              "telnyx",
              "bad_request",
              new AppError("invalid_input", "not a Telnyx webhook (JSON with data.event_type and data.payload)"),
              context,
            );
          const byNumber = await numbers.get("");
          const owner = parsed.to.map((n) => byNumber.get(n)).find((o) => o !== undefined) ?? null;
          if (!owner) return refuse("telnyx", "not_found", notFound(), { ...context, to: parsed.to });
          const { tenant, binding } = owner;
          Object.assign(context, { tenant, binding: binding.name });
          const verifyStarted = performance.now();
          const verdict = await verify(tenant, binding, request.headers, body);
          if (!verdict.ok) return unverified("telnyx", verdict, remote_ip, context);
          charge("telnyx", binding, `${tenant}/${binding.name}`, context);
          const key = keyOf("telnyx", parsed.id, context);
          const type = TELNYX_TYPES[parsed.eventType];
          if (!type) {
            metrics.ingressRequests.inc({ channel: "telnyx", outcome: "ignored" });
            return { ignored: parsed.eventType };
          }
          const p = parsed.payload;
          const sms = type === "sms.received";
          const event = envelope(
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
          );
          return await commit("telnyx", event, [span("ingress.verify", at, verifyStarted)], set);
        } finally {
          metrics.ingressSeconds.observe({ channel: "telnyx" }, (performance.now() - t0) / 1000);
        }
      },
      { parse: "none" },
    );
}

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
    json = JSON.parse(strictUtf8.decode(body));
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
async function telnyxNumbers(storage: SqliteStorage): Promise<Map<string, { tenant: string; binding: BindingSpec }>> {
  const out = new Map<string, { tenant: string; binding: BindingSpec }>();
  for (const row of await storage.resources.list({ kind: "bindings", limit: 100_000 })) {
    const b = row.spec as BindingSpec;
    if (b.type === "telnyx") for (const n of b.numbers ?? []) out.set(n, { tenant: row.tenant, binding: b });
  }
  return out;
}
