import type { Server } from "bun";
import { Elysia } from "elysia";
import type { Clock } from "../../core/clock.ts";
import { type Logger, REDACTED } from "../../core/log.ts";
import type { Metrics } from "../../core/metrics.ts";
import { counterSeries, histogramSeries, seriesBy } from "../../core/prom.ts";
import { SpecCache } from "../../control/resources/cache.ts";
import { type BindingSpec, NAME_PATTERN } from "../../control/resources/specs.ts";
import { AppError, problemResponse } from "../../errors/index.ts";
import { spanSince } from "../../events/envelope.ts";
import { jsonNestsDeeper, MAX_JSON_DEPTH, utf8 } from "../../server/body.ts";
import type { Storage } from "../../store/index.ts";
import type { Accepted, AcceptEvent, EventFields } from "./accept.ts";
import { DEFAULT_MAX_BODY_BYTES, type IngressGuard } from "./guard.ts";
import { credentialHeaders } from "./verify.ts";

/**
 * Request headers whose values never reach an envelope, whatever the binding: they carry
 * credentials. They, and the headers the binding reads its credential from, are kept by name
 * with the value "[redacted]" (a bearer token sent in the wrong header is still a secret).
 */
const PRIVATE_HEADERS = ["authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"];
const NAME = new RegExp(NAME_PATTERN);
const notFound = () => new AppError("not_found", "not found");

const isJsonType = (type: string | null) => !!type && /^application\/([\w.+-]+\+)?json\b/i.test(type.trim());

/** The body as the envelope keeps it: byte-exact text when it is UTF-8, base64 when not, and parsed when JSON. */
function bodyData(bytes: Uint8Array, contentType: string | null): Record<string, unknown> {
  let text: string | null = null;
  try {
    text = utf8(bytes);
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

/** The header names a binding's events keep without their values, per binding spec (read once per configuration change). */
const redactedNames = new WeakMap<object, Set<string>>();
function redactedFor(verify: NonNullable<BindingSpec["verify"]>): Set<string> {
  let names = redactedNames.get(verify);
  if (!names) redactedNames.set(verify, (names = new Set([...PRIVATE_HEADERS, ...credentialHeaders(verify)])));
  return names;
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
  const redacted = redactedFor(verify);
  let size = 0;
  // One native copy (lower-case names; Set-Cookie, the one list, is redacted by name) instead of a
  // callback per header, redacted and cut to size in place: it is this request's own object.
  const sent = request.headers.toJSON() as Record<string, string | string[]>;
  for (const name in sent) {
    const v = sent[name]!;
    const value = redacted.has(name) || typeof v !== "string" || (secret && v.includes(secret)) ? REDACTED : v;
    size += name.length + value.length;
    if (size > 16 * 1024) delete sent[name];
    else if (value !== v) sent[name] = value;
  }
  return sent as Record<string, string>;
}

export interface WebhookRouteDeps {
  storage: Storage;
  metrics: Metrics;
  clock: Clock;
  log: Logger;
  guard: IngressGuard;
  accept: AcceptEvent;
}

/** The route's path, as Elysia and Bun.serve's router both write it, and its `route` label in the metrics. */
export const WEBHOOK_PATH = "/ingress/webhook/:tenant/:binding";

/**
 * POST /ingress/webhook/:tenant/:binding (docs/api.md): a signed webhook from a LAN system,
 * verified with its binding's scheme (docs/webhook-verification.md) over the raw bytes, kept in
 * the event byte-exact with its headers (credentials redacted).
 *
 * One handler, mounted twice: as a Bun.serve route ahead of Elysia (`raw`, the main listener:
 * the framework's per-request context, cookie jar and hooks cost as much CPU as verifying and
 * storing a webhook, docs/performance.md#http-ingress) and as an Elysia route (`app`, which the
 * plain-HTTP listener and `app.handle` reach). Both answer alike: problem+json for a refusal,
 * counted in agentowl_http_requests_total under the same route label.
 */
export function webhookRoute(deps: WebhookRouteDeps) {
  const { metrics, clock, guard, accept, log } = deps;
  // Every request is timed and counted: series with their labels resolved once (src/core/prom.ts).
  const timed = histogramSeries(metrics.ingressSeconds, { channel: "webhook" });
  const answeredAs = seriesBy((status: number) =>
    counterSeries(metrics.httpRequests, { method: "POST", route: WEBHOOK_PATH, status: String(status) }),
  );
  // Bindings by tenant/name: read once per configuration change.
  const bindings = new SpecCache<BindingSpec>(deps.storage.resources, "bindings");

  /** The webhook, checked and committed; a refusal throws its AppError. */
  async function handle(
    request: Request,
    tenant: string,
    name: string,
    remote_ip: string | null,
    set: { status?: unknown },
  ): Promise<Accepted> {
    const t0 = performance.now();
    const at = clock.now();
    const context = { tenant, binding: name, remote_ip };
    try {
      // One answer for an unknown tenant and an unknown binding: tenants cannot be probed.
      const binding = NAME.test(tenant) && NAME.test(name) ? await bindings.value(tenant, name) : null;
      if (!binding || binding.type !== "webhook" || !binding.verify)
        return guard.refuse("webhook", "not_found", notFound(), context);
      const body = await guard.body("webhook", request, binding.max_body_bytes ?? DEFAULT_MAX_BODY_BYTES, context);
      guard.admit("webhook", remote_ip, context);
      const contentType = request.headers.get("content-type");
      if (binding.require_json && !isJsonType(contentType)) {
        guard.refuse(
          "webhook",
          "unsupported_media_type",
          new AppError("unsupported_media_type", "this binding takes JSON (Content-Type: application/json)"),
          context,
        );
      }
      const verifyStarted = performance.now();
      const verdict = await guard.verify(tenant, binding, request.headers, body);
      if (!verdict.ok) return guard.unverified("webhook", verdict, remote_ip, context);
      const verifySpan = spanSince("ingress.verify", at, verifyStarted);
      guard.charge("webhook", binding, `${tenant}/${name}`, context);
      const deliveryId = verdict.deliveryId ?? request.headers.get("idempotency-key");
      const key = guard.keyOf("webhook", deliveryId, context);
      const data = bodyData(body, contentType);
      if (binding.require_json && data.json === null) {
        const why = data.json_error
          ? new AppError("invalid_input", `the body's JSON is ${data.json_error}`, {
              errors: [{ field: "/", message: String(data.json_error) }],
            })
          : new AppError("invalid_input", "the body is not valid JSON");
        guard.refuse("webhook", "bad_request", why, context);
      }
      const fields: EventFields = {
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
      };
      return await accept("webhook", fields, at, [verifySpan], set);
    } finally {
      timed((performance.now() - t0) / 1000);
    }
  }

  const answered = (status: number) => answeredAs(status)();

  /** The Bun.serve route: the same answers the app's error handler and metrics hook would give. */
  const raw = async (
    request: Request & { params: Record<string, string> },
    server: Server<unknown>,
  ): Promise<Response> => {
    let response: Response;
    try {
      const set: { status?: unknown } = {};
      const remote_ip = server.requestIP(request)?.address ?? null;
      const { tenant, binding } = request.params;
      const accepted = await handle(request, tenant!, binding!, remote_ip, set);
      response = Response.json(accepted, { status: set.status as number });
    } catch (e) {
      const path = new URL(request.url).pathname;
      response = problemResponse(e, path);
      if (response.status >= 500) log.error("request failed", { method: "POST", path, err: e });
    }
    answered(response.status);
    return response;
  };

  const app = new Elysia({ normalize: false }).post(
    WEBHOOK_PATH,
    ({ request, params, server, set }) =>
      handle(request, params.tenant, params.binding, server?.requestIP(request)?.address ?? null, set),
    { parse: "none" },
  );
  return { app, raw };
}
