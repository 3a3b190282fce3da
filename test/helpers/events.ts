import { newId } from "../../src/core/ids.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import type { SqliteStorage } from "../../src/store/index.ts";

/** A webhook event for `tenant`, received `second` seconds after 2026-11-21T14:00:00Z. */
export function testEnvelope(tenant: string, second: number, over: Partial<Envelope> = {}): Envelope {
  const at = Date.UTC(2026, 10, 21, 14, 0, 0) + second * 1000;
  return {
    id: newId("evt", at),
    version: 1,
    type: "webhook.received",
    tenant,
    agent: null,
    channel: "webhook",
    source: { binding: "github" },
    received_at: new Date(at).toISOString(),
    trace_id: `T-${second}`,
    idempotency_key: `delivery-${tenant}-${second}`,
    data: { n: second },
    ...over,
  };
}

/** Store an event (and, optionally, a delivered delivery to `crm`) the way an ingress does. */
export function storeEvent(storage: SqliteStorage, e: Envelope, withDelivery = false): Promise<string> {
  return storage.committer.run((tx) => {
    const { id } = storage.events.insertTx(tx, e, [
      { name: "ingress", start: e.received_at, duration_ms: 3, outcome: "ok" },
    ]);
    if (withDelivery) {
      storage.events.insertDeliveryTx(tx, {
        id: newId("dlv"),
        eventId: id,
        tenant: e.tenant,
        endpoint: "crm",
        state: "delivered",
        attempts: 1,
        lastStatus: 200,
        lastError: null,
        createdAt: tx.now,
        updatedAt: tx.now,
      });
    }
    return id;
  });
}
