import { AppError } from "../errors/index.ts";
import type { DeliveryRow } from "../store/index.ts";
import { type DispatchContext, DELIVERY_JOB } from "./context.ts";

/** The states in which a delivery may have a job waiting to run. */
const WAITING_STATES = ["pending", "delivering", "retrying"] as const;

/**
 * What operators do to deliveries and endpoints (docs/state-machines.md#deliveries-the-dispatchers-tasks),
 * each audited with who asked: replay an event, retry or discard a delivery, reset a circuit.
 */
export class OperatorActions {
  constructor(private readonly ctx: DispatchContext) {}

  /**
   * Replay an event: to every target its routes give now (an event that was unrouted gets its
   * routes), or to one endpoint. Each is a new delivery, decided by policy again, with its own
   * webhook-id and a link to the delivery it repeats. One commit: the deliveries, their jobs and
   * the audit entry.
   */
  async replay(eventId: string, opts: { endpoint?: string; actor: string }): Promise<DeliveryRow[]> {
    const { storage } = this.ctx;
    const stored = await storage.events.get(eventId);
    if (!stored) throw new AppError("not_found", "not found");
    let targets: { endpoint: string; route: string | null }[];
    if (opts.endpoint) {
      if (!(await this.ctx.endpoint(stored.tenant, opts.endpoint)))
        throw new AppError("not_found", `endpoint ${stored.tenant}/${opts.endpoint} not found`);
      targets = [{ endpoint: opts.endpoint, route: null }];
    } else {
      targets = (await this.ctx.routes.route(stored.envelope)).targets;
      if (!targets.length)
        throw new AppError(
          "conflict",
          `no route of tenant ${stored.tenant} matches event ${eventId}: add a route, or replay it to one endpoint`,
        );
    }
    const ids = await storage.committer.run((tx) => {
      const made: string[] = [];
      for (const t of targets) {
        const previous = storage.events.latestDeliveryTx(tx, eventId, t.endpoint);
        const row = this.ctx.deliveries.insertTx(tx, {
          eventId,
          tenant: stored.tenant,
          endpoint: t.endpoint,
          route: t.route,
          replayOf: previous?.id ?? null,
          requestedBy: opts.actor,
        });
        if (!row) continue;
        this.ctx.enqueueTx(tx, row, `delivery:${row.id}`);
        made.push(row.id);
      }
      storage.audit.appendTx(tx, {
        actor: opts.actor,
        tenant: stored.tenant,
        action: "event.replay",
        target: eventId,
        details: { deliveries: made, endpoint: opts.endpoint ?? null },
      });
      return made;
    });
    return (await Promise.all(ids.map((x) => storage.events.getDelivery(x)))).filter((d) => d !== null);
  }

  /** A dead delivery tries again under the same webhook-id, with a fresh max_attempts / max_age budget. */
  retry(d: DeliveryRow, actor: string): Promise<DeliveryRow> {
    return this.ctx.storage.committer.run((tx) => {
      const retried = this.ctx.deliveries.retryTx(tx, d, actor);
      this.ctx.enqueueTx(tx, d, `delivery:${d.id}:retry:${d.attempts}`);
      return retried;
    });
  }

  /** A dead delivery, or one still retrying, is given up on: it stays on record, it is never tried again. */
  discard(d: DeliveryRow, actor: string): Promise<DeliveryRow> {
    return this.ctx.storage.committer.run((tx) => this.ctx.deliveries.discardTx(tx, d, actor));
  }

  /** `agentowl endpoints reset-circuit`: audited first, then the circuit closed and the waiting deliveries sent. */
  async resetCircuit(tenant: string, name: string, actor: string): Promise<{ wasOpen: boolean; woken: number }> {
    const circuit = this.ctx.breakers.peek(`${tenant}/${name}`);
    await this.ctx.storage.committer.run((tx) =>
      this.ctx.storage.audit.appendTx(tx, {
        actor,
        tenant,
        action: "endpoint.reset_circuit",
        target: `${tenant}/endpoints/${name}`,
        decision: null,
        details: { state: circuit.state, consecutive_failures: circuit.consecutiveFailures },
      }),
    );
    return this.unblock(tenant, name);
  }

  /**
   * An endpoint's waits are over: its circuit starts closed, and every delivery to it whose job
   * waits for a later time (a backoff, the circuit's cooldown, a busy endpoint) runs now. For an
   * operator's reset, and when the endpoint's URL changed (a wrong URL fixed).
   */
  async unblock(tenant: string, name: string): Promise<{ wasOpen: boolean; woken: number }> {
    const { storage } = this.ctx;
    const wasOpen = this.ctx.breakers.reset(`${tenant}/${name}`);
    const prefixes: string[] = [];
    for (const state of WAITING_STATES) {
      for (let before: string | undefined; ; ) {
        const page = await storage.events.deliveries({ tenants: [tenant], endpoint: name, state, before, limit: 1000 });
        prefixes.push(...page.map((d) => `delivery:${d.id}`));
        if (page.length < 1000) break;
        before = page.at(-1)!.id;
      }
    }
    return { wasOpen, woken: await storage.queue.runNow(DELIVERY_JOB, prefixes) };
  }
}
