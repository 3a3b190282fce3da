import type { EndpointSpec } from "../control/resources/specs.ts";
import { isoTime } from "../core/iso-time.ts";
import { type Envelope, type Span, spanSince } from "../events/envelope.ts";
import { EVENT_RECEIVED, type EventRouting } from "../events/handoff.ts";
import type { RouteDecision } from "../route/route.ts";
import type { DeliveryRow, Job, OutboxEntry, Tx } from "../store/index.ts";
import type { Subscriber } from "../workers/outbox-relay.ts";
import { AGENT_TARGET, type DispatchContext, deliveryJob } from "./context.ts";
import { evaluate } from "./decide.ts";
import type { FastAttempts } from "./fast-path.ts";
import type { Place } from "./gate.ts";
import { TaskTrace } from "./trace.ts";

/**
 * Routing (docs/architecture.md#dispatch): an event's routes give its targets, one delivery each
 * with its `delivery.run` job. Planned in memory first, then written by the unit of work that
 * inserts the event (`inline`, at an ingress's commit), or by one commit per batch of
 * `event.received` outbox entries (`router`) for an event that was not routed at its commit.
 */

type Target = {
  endpoint: string;
  route: string | null;
  fast?: { spec: EndpointSpec; record: Record<string, unknown>; trace: TaskTrace; place: Place };
};
type Routed = {
  id: string;
  tenant: string;
  envelope: Envelope;
  decision: RouteDecision;
  span: Span;
  targets: Target[];
};
type Started = {
  job: Job | null;
  row: DeliveryRow;
  spec: EndpointSpec;
  envelope: Envelope;
  trace: TaskTrace;
  place: Place;
};

export class Routing {
  constructor(
    private readonly ctx: DispatchContext,
    private readonly fast: FastAttempts,
  ) {}

  /** Routing at the ingress's commit (src/events/handoff.ts): planned ahead, written by the unit of work that inserts the event. */
  readonly inline: EventRouting = {
    plan: async (envelopes) => {
      const routed = new Map<string, Routed>();
      try {
        for (const e of envelopes) routed.set(e.id, await this.plan(e));
      } catch (e) {
        this.finish([...routed.values()], [], false, 0, 0);
        throw e;
      }
      const startedBy = new Map<string, Started[]>();
      // The commit's start, for the fast attempts' audit.log span: the transaction's.
      let committedAt = 0;
      let committing = 0;
      let finished = false;
      return {
        routingTx: (tx, id) => {
          const r = routed.get(id);
          if (!r) return null;
          // A batch run again starts this event's writes over.
          startedBy.delete(id);
          committedAt = tx.now;
          committing = performance.now();
          return { routing: routingRecord(r, tx.now), span: r.span };
        },
        writeTx: (tx, id) => {
          const r = routed.get(id);
          if (r) startedBy.set(id, this.writeTx(tx, r));
        },
        done: (committed) => {
          if (finished) return;
          finished = true;
          const started: Started[] = [];
          for (const list of startedBy.values()) for (const x of list) started.push(x);
          this.finish([...routed.values()], started, committed, committedAt, performance.now() - committing);
        },
      };
    },
  };

  /** event.received → routing, for events that were not routed at their commit (src/events/handoff.ts). */
  readonly router: Subscriber = {
    name: "router",
    topics: [EVENT_RECEIVED],
    handle: (entry) => this.routeEntries([entry]),
    handleBatch: (entries) => this.routeEntries(entries),
  };

  /**
   * A batch of entries (what the relay read at once) is routed into one commit: the outbox's
   * at-least-once and the unique (event, endpoint) index make a repeat add nothing.
   */
  private async routeEntries(entries: OutboxEntry[]): Promise<void> {
    const { storage } = this.ctx;
    const envelopes: Envelope[] = [];
    const seen = new Set<string>();
    for (const entry of entries) {
      const id = (entry.payload as { id?: string })?.id;
      if (!id || seen.has(id)) continue;
      seen.add(id);
      const stored = await storage.events.getUnroutedEvent(id);
      if (stored) envelopes.push(stored.envelope);
    }
    if (!envelopes.length) return;
    // The same plan as at an ingress's commit; here the event's row exists and gets its routing.
    const plan = await this.inline.plan(envelopes);
    let committed = false;
    try {
      await storage.committer.run((tx) => {
        for (const e of envelopes) {
          const { routing, span } = plan.routingTx(tx, e.id)!;
          storage.events.setRoutingTx(tx, e.id, routing, [span]);
          plan.writeTx(tx, e.id);
        }
      });
      committed = true;
    } finally {
      plan.done(committed);
    }
  }

  /**
   * Routing's first half, nothing written: the event's routes, and for each target whose endpoint
   * has a free place and a closed circuit, its policy decision. A target the policy allows takes
   * the fast path: it is decided in the routing commit itself (state `delivering`, the decision,
   * the first attempt's audit entry), and its attempt starts as soon as that commit is on disk: no
   * claim, no worker to wait for, two commits fewer. On a shared database its job is created
   * leased to this process (a crash is recovered with the lease); on SQLite it has no job until it
   * needs one: a retry's job goes in the attempt's commit, and one cut off by a crash is found by
   * its state at the next start (src/dispatch/fast-path.ts `recoverFastAttempts`). Any other
   * target gets a pending delivery and an ordinary job.
   */
  private async plan(envelope: Envelope): Promise<Routed> {
    const { id, tenant } = envelope;
    const routedAt = this.ctx.clock.now();
    const t0 = performance.now();
    const decision = withAgents(await this.ctx.routes.route(envelope), this.ctx.targets?.routesFor(envelope) ?? []);
    const span = spanSince(
      "route",
      routedAt,
      t0,
      decision.unrouted ? "skipped" : "ok",
      decision.unrouted ? "unrouted: no route matched" : decision.targets.map((t) => t.endpoint).join(", "),
    );
    const targets: Target[] = [];
    const routed: Routed = { id, tenant, envelope, decision, span, targets };
    try {
      for (const t of decision.targets) {
        const spec = await this.ctx.endpoint(tenant, t.endpoint);
        const place = spec ? this.ctx.gate.take({ tenant, endpoint: t.endpoint }, spec) : "busy";
        if (typeof place === "string") {
          targets.push(t);
          continue;
        }
        const trace = new TaskTrace(this.ctx.clock);
        // Pushed first, so a policy that fails to load still frees the place (below).
        const target: Target = { ...t, fast: { spec: spec!, record: {}, trace, place } };
        targets.push(target);
        const { decision: verdict, record } = await evaluate(
          this.ctx,
          { tenant, endpoint: t.endpoint },
          envelope,
          trace,
        );
        if (verdict.effect !== "allow") {
          place.release(null);
          delete target.fast;
          continue;
        }
        target.fast!.record = record;
      }
    } catch (e) {
      this.finish([routed], [], false, 0, 0);
      throw e;
    }
    return routed;
  }

  /** Routing's writes for one event whose row exists in this transaction: its deliveries and their jobs; the fast attempts to start once it commits. */
  private writeTx(tx: Tx, r: Routed): Started[] {
    const { storage, deliveries, lease } = this.ctx;
    const started: Started[] = [];
    for (const t of r.targets) {
      // A fast-path delivery is inserted decided: `delivering`, its decision and its spans so far
      // (policy.eval; dropped from memory once committed: a batch run again writes them again).
      const row = deliveries.insertTx(
        tx,
        { eventId: r.id, tenant: r.tenant, endpoint: t.endpoint, route: t.route },
        t.fast ? { decision: t.fast.record, trace: t.fast.trace.peek() } : undefined,
      );
      if (!row) continue;
      if (!t.fast) {
        this.ctx.enqueueTx(tx, row, `delivery:${row.id}`);
        continue;
      }
      // Born leased to this process where a job says who works on it (a shared database).
      const job = this.ctx.jobless
        ? null
        : storage.queue.enqueueLeasedTx(tx, deliveryJob(row, `delivery:${row.id}`), lease);
      deliveries.attemptAuditTx(tx, row, t.fast.spec.url, 1);
      started.push({
        job,
        row,
        spec: t.fast.spec,
        envelope: r.envelope,
        trace: t.fast.trace,
        place: t.fast.place,
      });
    }
    return started;
  }

  /**
   * After the routing commit (or its failure): the fast attempts start, and places reserved for
   * targets that did not start (a repeat, a failed commit) are free again.
   */
  private finish(
    routed: readonly Routed[],
    started: readonly Started[],
    committed: boolean,
    committedAt: number,
    ms: number,
  ): void {
    const going = new Set(committed ? started.map((x) => x.place) : []);
    for (const r of routed)
      for (const t of r.targets) if (t.fast && !going.has(t.fast.place)) t.fast.place.release(null);
    if (!committed) return;
    for (const x of started) {
      x.trace.take();
      x.trace.push(
        "audit.log",
        committedAt,
        ms,
        "ok",
        "delivery.attempt 1, with the checkpoint delivering (in the routing commit)",
      );
      this.fast.start(x.job, x.row, x.spec, x.envelope, x.trace, x.place);
    }
  }
}

/**
 * The agents whose active email, webhook or sms tool receives the event are targets too
 * (`agent:<name>`, credited to no route), after the routes' own, each once.
 */
function withAgents(decision: RouteDecision, agents: readonly string[]): RouteDecision {
  if (!agents.length) return decision;
  const seen = new Set(decision.targets.map((t) => t.endpoint));
  const targets = [...decision.targets];
  for (const a of agents) {
    const endpoint = `${AGENT_TARGET}${a}`;
    if (seen.has(endpoint)) continue;
    seen.add(endpoint);
    targets.push({ endpoint, route: null });
  }
  return { ...decision, targets, unrouted: targets.length === 0 };
}

function routingRecord(r: Routed, at: number) {
  return {
    matched: r.decision.matched,
    used_default: r.decision.usedDefault,
    unrouted: r.decision.unrouted,
    at: isoTime(at),
  };
}
