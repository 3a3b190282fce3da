import type { DeliveryRow } from "../store/index.ts";
import { type DispatchContext, DELIVERY_JOB } from "./context.ts";
import { TERMINAL } from "./delivery.ts";
import { BUSY, CIRCUIT_OPEN } from "./run.ts";

/** What a delivery that is not finished waits for, as the API and CLI show it. */
export type Waiting =
  | { reason: "approval"; approval_id: string | null; until: number | null }
  | { reason: "circuit_open"; until: number | null }
  | { reason: "endpoint_busy"; until: number }
  | { reason: "retry"; until: number; last_error: string | null }
  | { reason: "attempt_in_progress"; until: null }
  | { reason: "worker"; until: null };

/** What the API shows of deliveries and endpoints beyond their rows: read when asked, not stored. */
export class DispatchStatus {
  constructor(private readonly ctx: DispatchContext) {}

  /** What a delivery that is not finished waits for; null when it is finished. */
  async waitingFor(d: DeliveryRow): Promise<Waiting | null> {
    const { storage } = this.ctx;
    if (TERMINAL.has(d.state)) return null;
    if (d.state === "awaiting_approval") {
      const approval = d.approvalId ? await storage.approvals.get(d.approvalId) : null;
      return { reason: "approval", approval_id: d.approvalId, until: approval?.expiresAt ?? null };
    }
    const job = await storage.queue.unfinished(DELIVERY_JOB, `delivery:${d.id}`);
    // A fast-path attempt on SQLite holds no job while it is made (src/dispatch/fast-path.ts).
    if (!job) return d.state === "delivering" ? { reason: "attempt_in_progress", until: null } : null;
    if (job.state === "leased") return { reason: "attempt_in_progress", until: null };
    if (job.lastError?.endsWith(CIRCUIT_OPEN)) {
      const circuit = this.ctx.breakers.peek(`${d.tenant}/${d.endpoint}`);
      if (circuit.state !== "closed") return { reason: "circuit_open", until: circuit.retryAt };
    }
    if (job.runAt <= this.ctx.clock.now()) return { reason: "worker", until: null };
    if (job.lastError?.endsWith(BUSY)) return { reason: "endpoint_busy", until: job.runAt };
    return { reason: "retry", until: job.runAt, last_error: d.lastError };
  }

  /** An endpoint's health: its circuit, deliveries in flight and by state. */
  async endpointStatus(tenant: string, name: string) {
    const key = `${tenant}/${name}`;
    return {
      circuit: this.ctx.breakers.peek(key),
      in_flight: this.ctx.slots.inFlight(key),
      deliveries: await this.ctx.storage.events.countDeliveries(tenant, name),
    };
  }
}
