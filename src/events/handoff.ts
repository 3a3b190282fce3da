import type { Storage, Tx } from "../store/index.ts";
import type { Envelope, Span } from "./envelope.ts";

/**
 * The hand-off from an ingress to routing (docs/architecture.md: the event and what processes it commit
 * together, in one transaction).
 *
 * Routed at its commit: the ingress asks routing for a plan before it commits (the routes, the
 * targets, the fast path's policy decisions: all in memory, nothing written), and the unit of
 * work that inserts the event also writes its routing record, its deliveries and their jobs. One
 * commit per event instead of two, no outbox entry to write and read back, no row rewritten.
 *
 * Routed later: when there is no plan (no router wired in, or planning failed: a policy that
 * cannot load), the event carries an `event.received` outbox entry instead, and the router routes
 * it from there, as at-least-once as the outbox. Either way nothing is acknowledged that is not
 * both stored and certain to be routed.
 */
export const EVENT_RECEIVED = "event.received";

/** Routing decided ahead of a commit, for the events it was asked about. */
export interface RoutingPlan {
  /** At the start of an event's part of the unit of work: its routing record and route span, or null when the plan does not cover it. */
  routingTx(tx: Tx, id: string): { routing: Record<string, unknown>; span: Span } | null;
  /** Once the event's row exists in this transaction (it was created, not a repeat): its deliveries and their jobs. */
  writeTx(tx: Tx, id: string): void;
  /** After the commit (true) or its failure (false): fast attempts start, or their reserved slots are freed. */
  done(committed: boolean): void;
}

export interface EventRouting {
  plan(envelopes: readonly Envelope[]): Promise<RoutingPlan>;
}

/**
 * Insert `envelope` in the unit of work `tx`, with its routing when planned, else with an
 * `event.received` entry. Its trace: `trace`, the route span when routed, then `after` (the
 * commit's own span: routing was decided before it).
 */
export function insertEventTx(
  storage: Storage,
  tx: Tx,
  envelope: Envelope,
  trace: readonly Span[],
  plan: RoutingPlan | null,
  after: readonly Span[] = [],
): { id: string; created: boolean } {
  const routed = plan?.routingTx(tx, envelope.id) ?? null;
  const r = storage.events.insertTx(
    tx,
    envelope,
    routed ? [...trace, routed.span, ...after] : [...trace, ...after],
    routed?.routing ?? null,
  );
  if (!r.created) return r;
  if (routed) plan!.writeTx(tx, envelope.id);
  else tx.emit({ topic: EVENT_RECEIVED, tenant: envelope.tenant, payload: { id: r.id } });
  return r;
}

/**
 * Run `commit` with a routing plan for `envelopes` (null when there is no router, or planning
 * failed: the outbox routes those), and tell the plan how the commit went.
 */
export async function commitRouted<T>(
  routing: EventRouting | undefined,
  envelopes: readonly Envelope[],
  commit: (plan: RoutingPlan | null) => Promise<T>,
): Promise<T> {
  let plan: RoutingPlan | null = null;
  if (routing && envelopes.length) {
    try {
      plan = await routing.plan(envelopes);
    } catch {
      // The router will meet the same trouble on the outbox path, and log it there.
      plan = null;
    }
  }
  let committed = false;
  try {
    const result = await commit(plan);
    committed = true;
    return result;
  } finally {
    plan?.done(committed);
  }
}
