import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { isId } from "../core/ids.ts";
import type { Span } from "../events/envelope.ts";
import { AppError } from "../errors/index.ts";
import { NAME_PATTERN } from "../control/resources/specs.ts";
import type { DeliveryRow, EventStore, ResourceStore, TokenStore } from "../store/index.ts";
import { type AttemptRow, DELIVERY_STATES } from "../store/index.ts";
import type { Waiting } from "../dispatch/dispatcher.ts";
import { canAccess, type Principal, requireTenant, tenantsFor } from "./auth.ts";
import { authenticated, pageOf, readPage } from "./http.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const NAME = new RegExp(NAME_PATTERN);

/** What the API needs of the dispatcher (src/dispatch/dispatcher.ts). */
export interface DeliveryActions {
  replay(eventId: string, opts: { endpoint?: string; actor: string }): Promise<DeliveryRow[]>;
  retry(d: DeliveryRow, actor: string): Promise<DeliveryRow>;
  discard(d: DeliveryRow, actor: string): Promise<DeliveryRow>;
  endpointStatus(
    tenant: string,
    name: string,
  ): Promise<{
    circuit: { state: string; consecutiveFailures: number; retryAt: number | null };
    in_flight: number;
    deliveries: Record<string, number>;
  }>;
  /** What a delivery that is not finished waits for (null when finished). */
  waitingFor(d: DeliveryRow): Promise<Waiting | null>;
  /** Close an endpoint's circuit and send its waiting deliveries now (audited). */
  resetCircuit(tenant: string, name: string, actor: string): Promise<{ wasOpen: boolean; woken: number }>;
}

/** A wait as the API shows it: its reason, and until when (ISO time) where that is known. */
const presentWaiting = (w: Waiting | null) => (w === null ? null : { ...w, until: iso(w.until) });

export function presentDelivery(d: DeliveryRow, waiting?: Waiting | null) {
  return {
    ...(waiting === undefined ? {} : { waiting_for: presentWaiting(waiting) }),
    id: d.id,
    event_id: d.eventId,
    tenant: d.tenant,
    endpoint: d.endpoint,
    route: d.route,
    state: d.state,
    decision: d.decision,
    approval_id: d.approvalId,
    attempts: d.attempts,
    last_status: d.lastStatus,
    last_error: d.lastError,
    replay_of: d.replayOf,
    requested_by: d.requestedBy,
    first_attempt_at: iso(d.firstAttemptAt),
    created_at: iso(d.createdAt),
    updated_at: iso(d.updatedAt),
  };
}

const presentAttempt = (a: AttemptRow) => ({
  attempt: a.attempt,
  started_at: iso(a.startedAt),
  latency_ms: a.latencyMs,
  status: a.status,
  error_class: a.errorClass,
  error: a.error,
  response_excerpt: a.excerpt,
});

/**
 * An event's whole timeline (docs/architecture.md): its ingress and routing spans, then each delivery's task
 * spans labelled with the delivery and endpoint, in time order.
 */
export function timeline(trace: Span[], dels: DeliveryRow[]): (Span & { delivery?: string; endpoint?: string })[] {
  // The event's own spans are in pipeline order already (their millisecond starts can tie or
  // round backwards); the tasks' spans are merged in by start, a stable sort keeping ties in the
  // order they were written.
  const at = (s: Span) => Date.parse(s.start);
  const tasks = dels
    .flatMap((d) => d.trace.map((s) => ({ ...s, delivery: d.id, endpoint: d.endpoint })))
    .sort((a, b) => at(a) - at(b));
  const out: (Span & { delivery?: string; endpoint?: string })[] = [];
  let i = 0;
  for (const s of trace) {
    while (i < tasks.length && at(tasks[i]!) < at(s)) out.push(tasks[i++]!);
    out.push(s);
  }
  return out.concat(tasks.slice(i));
}

const Empty = t.Object({}, { additionalProperties: false });
const Replay = t.Object(
  {
    endpoint: t.Optional(
      t.String({
        pattern: NAME_PATTERN,
        description: "replay to this endpoint only; default: every target the event's routes give now",
      }),
    ),
  },
  { additionalProperties: false },
);

/** /v1/deliveries (list, show, retry, discard), POST /v1/events/:id/replay, an endpoint's status. */
export function deliveryRoutes(
  events: EventStore,
  resources: ResourceStore,
  actions: DeliveryActions,
  tokens: TokenStore,
  clock: Clock,
) {
  const actor = (p: Principal) => `token:${p.tokenId}`;
  const visible = async (p: Principal, id: string, access: "read" | "write"): Promise<DeliveryRow> => {
    const d = isId(id, "dlv") ? await events.getDelivery(id) : null;
    if (!d || !canAccess(p, d.tenant, "read")) throw new AppError("not_found", "not found");
    if (access === "write" && !canAccess(p, d.tenant, "write"))
      throw new AppError("forbidden", `this token may only read tenant ${d.tenant}`);
    return d;
  };
  return new Elysia({ normalize: false })
    .use(authenticated(tokens, clock))
    .get("/deliveries", async ({ principal, query }) => {
      const q = query as Record<string, string | undefined>;
      const page = readPage(q);
      if (q.state !== undefined && !(DELIVERY_STATES as readonly string[]).includes(q.state)) {
        throw new AppError("invalid_input", `state must be one of ${DELIVERY_STATES.join(", ")}, not '${q.state}'`);
      }
      const rows = await events.deliveries({
        tenants: tenantsFor(principal, q.tenant),
        eventId: q.event,
        endpoint: q.endpoint,
        state: q.state,
        before: page.after,
        limit: page.limit + 1,
      });
      const shown = await Promise.all(rows.map(async (d) => presentDelivery(d, await actions.waitingFor(d))));
      return pageOf(shown, page.limit, (d) => d.id);
    })
    .get("/deliveries/:id", async ({ principal, params }) => {
      const d = await visible(principal, params.id, "read");
      return {
        ...presentDelivery(d, await actions.waitingFor(d)),
        attempt_log: (await events.listAttempts(d.id)).map(presentAttempt),
        trace: d.trace,
      };
    })
    .group("", (app) =>
      app
        // Before the body is validated: another tenant's delivery or event is 404 whatever is sent.
        .derive({ as: "local" }, async ({ principal, params, path }) => {
          const id = (params as Record<string, string>).id!;
          if (path.includes("/deliveries/")) return { delivery: await visible(principal, id, "write") };
          const event = isId(id, "evt") ? await events.get(id) : null;
          if (!event || !canAccess(principal, event.tenant, "read")) throw new AppError("not_found", "not found");
          if (!canAccess(principal, event.tenant, "write"))
            throw new AppError("forbidden", `this token may only read tenant ${event.tenant}`);
          return { delivery: null };
        })
        // No body, or a JSON object: never an array, a string or null.
        // (A body that is not JSON was refused as it was read: http.ts.)
        .onTransform({ as: "local" }, ({ body }) => {
          if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body)))
            throw new AppError("invalid_input", "the body must be a JSON object, or nothing");
        })
        .post(
          "/deliveries/:id/retry",
          async ({ principal, delivery, set }) => {
            set.status = 202;
            return presentDelivery(await actions.retry(delivery!, actor(principal)));
          },
          { body: t.Optional(Empty), parse: "json" },
        )
        .post(
          "/deliveries/:id/discard",
          async ({ principal, delivery }) => presentDelivery(await actions.discard(delivery!, actor(principal))),
          { body: t.Optional(Empty), parse: "json" },
        )
        .post(
          "/events/:id/replay",
          async ({ principal, params, body, set }) => {
            const made = await actions.replay(params.id, { endpoint: body?.endpoint, actor: actor(principal) });
            set.status = 202;
            return { event_id: params.id, deliveries: made.map((d) => presentDelivery(d)) };
          },
          // No body, or {}: every target its routes give now; {"endpoint": "crm"}: that one.
          { body: t.Optional(Replay), parse: "json" },
        ),
    )
    .post(
      "/tenants/:tenant/endpoints/:name/reset-circuit",
      async ({ principal, params, body }) => {
        requireTenant(principal, params.tenant, "write");
        if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body)))
          throw new AppError("invalid_input", "the body must be a JSON object, or nothing");
        const exists =
          NAME.test(params.name) &&
          (await resources.get({ tenant: params.tenant, kind: "endpoints", name: params.name }));
        if (!exists) throw new AppError("not_found", `endpoint ${params.tenant}/${params.name} not found`);
        const r = await actions.resetCircuit(params.tenant, params.name, actor(principal));
        return { tenant: params.tenant, endpoint: params.name, was_open: r.wasOpen, deliveries_sent_now: r.woken };
      },
      { body: t.Optional(Empty) },
    )
    .get("/tenants/:tenant/endpoints/:name/status", async ({ principal, params }) => {
      requireTenant(principal, params.tenant, "read");
      const exists =
        NAME.test(params.name) &&
        (await resources.get({ tenant: params.tenant, kind: "endpoints", name: params.name }));
      if (!exists) throw new AppError("not_found", `endpoint ${params.tenant}/${params.name} not found`);
      const s = await actions.endpointStatus(params.tenant, params.name);
      return {
        tenant: params.tenant,
        endpoint: params.name,
        circuit: {
          state: s.circuit.state,
          consecutive_failures: s.circuit.consecutiveFailures,
          retry_at: iso(s.circuit.retryAt),
        },
        in_flight: s.in_flight,
        deliveries: s.deliveries,
      };
    });
}
