import type { Clock } from "../../core/clock.ts";
import type { Metrics } from "../../core/metrics.ts";
import { counterSeries, seriesBy } from "../../core/prom.ts";
import { type Envelope, newEnvelope, type Span, spanSince } from "../../events/envelope.ts";
import { commitRouted, type EventRouting, insertEventTx } from "../../events/handoff.ts";
import type { Storage } from "../../store/index.ts";

export interface AcceptDeps {
  storage: Storage;
  metrics: Metrics;
  clock: Clock;
  /** Routing at the commit; without it events reach the router through the outbox. */
  routing?: EventRouting;
}

/** What a route says about a verified request; the envelope's id, version and trace id are made here. */
export type EventFields = Pick<Envelope, "type" | "tenant" | "channel" | "source" | "idempotency_key" | "data">;

/** The answer's body: the event's id, and `duplicate` when the delivery was a repeat. */
export type Accepted = { id: string } | { id: string; duplicate: true };

/**
 * A verified request becomes an event: its envelope, then the event and its routing (or its
 * `event.received` hand-off to the router, src/events/handoff.ts) in one group commit. The answer
 * is 202 for a new event, or 200 with the first event's id for a repeat of its idempotency key
 * (the events table is unique per tenant, binding and key, so concurrent repeats race to one row).
 */
export function eventAcceptor(deps: AcceptDeps) {
  const { storage, metrics, clock } = deps;
  // Each channel's two answers, counted as series (src/core/prom.ts): no label hashing per request.
  const counted = seriesBy((channel: string) => ({
    accepted: counterSeries(metrics.ingressRequests, { channel, outcome: "accepted" }),
    duplicate: counterSeries(metrics.ingressRequests, { channel, outcome: "duplicate" }),
  }));
  const count = (channel: string, created: boolean) => {
    const c = counted(channel);
    if (created) c.accepted();
    else c.duplicate();
  };
  return async (
    channel: string,
    fields: EventFields,
    at: number,
    trace: Span[],
    set: { status?: unknown },
  ): Promise<Accepted> => {
    const envelope = newEnvelope(fields, at);
    const result = await commitRouted(deps.routing, [envelope], (plan) => {
      const t0 = performance.now();
      const startedAt = clock.now();
      return storage.committer.run((tx) =>
        insertEventTx(storage, tx, envelope, trace, plan, [spanSince("ingress.commit", startedAt, t0)]),
      );
    });
    count(channel, result.created);
    set.status = result.created ? 202 : 200;
    return result.created ? { id: result.id } : { id: result.id, duplicate: true };
  };
}

export type AcceptEvent = ReturnType<typeof eventAcceptor>;
