import { and, asc, desc, eq, gt, gte, inArray, lt, lte, type SQL } from "drizzle-orm";
import type { Envelope, Span } from "../../events/envelope.ts";
import { deliveries, events } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteTx } from "./committer.ts";

export interface EventQuery {
  /** Only these tenants (a tenant token's view); all when omitted. */
  tenants?: readonly string[];
  type?: string;
  channel?: string;
  since?: number;
  until?: number;
  /** Newest first, before this id (the cursor). */
  before?: string;
  /** Oldest first, after this id (following new events). */
  after?: string;
  limit: number;
}

export interface StoredEvent {
  envelope: Envelope;
  trace: Span[];
}

export type DeliveryRow = typeof deliveries.$inferSelect;

/**
 * Events and their deliveries. Ingresses insert inside their unit of work, so an event and its
 * processing job commit together (SPEC §2); the API reads.
 */
export class SqliteEvents {
  constructor(private readonly db: Db) {}

  /** Insert an event unless its idempotency key was seen for this tenant and binding: then the original id. */
  insertTx(tx: SqliteTx, envelope: Envelope, trace: Span[] = []): { id: string; created: boolean } {
    const inserted = tx.db
      .insert(events)
      .values({
        id: envelope.id,
        tenant: envelope.tenant,
        type: envelope.type,
        channel: envelope.channel,
        agent: envelope.agent,
        binding: envelope.source.binding,
        idempotencyKey: envelope.idempotency_key,
        receivedAt: Date.parse(envelope.received_at),
        envelope,
        trace,
      })
      .onConflictDoNothing()
      .returning({ id: events.id })
      .get();
    if (inserted) return { id: inserted.id, created: true };
    const original = tx.db
      .select({ id: events.id })
      .from(events)
      .where(and(eq(events.tenant, envelope.tenant), eq(events.binding, envelope.source.binding), eq(events.idempotencyKey, envelope.idempotency_key ?? "")))
      .get();
    if (!original) throw new Error(`event ${envelope.id} was not inserted and has no idempotent original`);
    return { id: original.id, created: false };
  }

  async list(q: EventQuery): Promise<StoredEvent[]> {
    const where: (SQL | undefined)[] = [
      q.tenants ? inArray(events.tenant, [...q.tenants]) : undefined,
      q.type ? eq(events.type, q.type) : undefined,
      q.channel ? eq(events.channel, q.channel) : undefined,
      q.since !== undefined ? gte(events.receivedAt, q.since) : undefined,
      q.until !== undefined ? lte(events.receivedAt, q.until) : undefined,
      q.before ? lt(events.id, q.before) : undefined,
      q.after ? gt(events.id, q.after) : undefined,
    ];
    return this.db
      .select({ envelope: events.envelope, trace: events.trace })
      .from(events)
      .where(and(...where))
      .orderBy(q.after ? asc(events.id) : desc(events.id))
      .limit(q.limit)
      .all() as StoredEvent[];
  }

  async get(id: string): Promise<(StoredEvent & { tenant: string }) | null> {
    const row = this.db.select({ envelope: events.envelope, trace: events.trace, tenant: events.tenant }).from(events).where(eq(events.id, id)).get();
    return (row as (StoredEvent & { tenant: string }) | undefined) ?? null;
  }

  /** Newest first, like events; `before` is the cursor. */
  async deliveries(q: { tenants?: readonly string[]; eventId?: string; state?: string; before?: string; limit: number }): Promise<DeliveryRow[]> {
    return this.db
      .select()
      .from(deliveries)
      .where(
        and(
          q.tenants ? inArray(deliveries.tenant, [...q.tenants]) : undefined,
          q.eventId ? eq(deliveries.eventId, q.eventId) : undefined,
          q.state ? eq(deliveries.state, q.state as DeliveryRow["state"]) : undefined,
          q.before ? lt(deliveries.id, q.before) : undefined,
        ),
      )
      .orderBy(desc(deliveries.id))
      .limit(q.limit)
      .all();
  }

  insertDeliveryTx(tx: SqliteTx, row: DeliveryRow): void {
    tx.db.insert(deliveries).values(row).run();
  }
}
