import { and, asc, desc, eq, gt, gte, inArray, lt, lte, type SQL } from "drizzle-orm";
import type { Envelope, Span } from "../../events/envelope.ts";
import { deliveries, deliveryAttempts, events } from "../schema/index.ts";
import type { Db, SqliteHandle } from "../sqlite.ts";
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
export type AttemptRow = typeof deliveryAttempts.$inferSelect;

/**
 * Events and their deliveries. Ingresses insert inside their unit of work, so an event and its
 * processing job commit together (SPEC §2); the API reads.
 */
export class SqliteEvents {
  private readonly db: Db;
  // The ingress hot path: raw statements, prepared once (drizzle's builder prepares per call).
  private readonly insert;
  private readonly original;

  constructor(handle: SqliteHandle) {
    this.db = handle.db;
    this.insert = handle.sqlite.prepare<{ id: string }, [string, string, string, string, string | null, string, string | null, number, string, string]>(
      "INSERT INTO events (id, tenant, type, channel, agent, binding, idempotency_key, received_at, envelope, trace) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
    );
    this.original = handle.sqlite.prepare<{ id: string }, [string, string, string]>("SELECT id FROM events WHERE tenant = ? AND binding = ? AND idempotency_key = ?");
  }

  /** Insert an event unless its idempotency key was seen for this tenant and binding: then the original id. */
  insertTx(_tx: SqliteTx, envelope: Envelope, trace: Span[] = []): { id: string; created: boolean } {
    const e = envelope;
    const inserted = this.insert.get(e.id, e.tenant, e.type, e.channel, e.agent, e.source.binding, e.idempotency_key, Date.parse(e.received_at), JSON.stringify(e), JSON.stringify(trace));
    if (inserted) return { id: inserted.id, created: true };
    const original = this.original.get(e.tenant, e.source.binding, e.idempotency_key ?? "");
    if (!original) throw new Error(`event ${e.id} was not inserted and has no idempotent original`);
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

  /** A new delivery; false when the event already has one to that endpoint. */
  insertDeliveryTx(tx: SqliteTx, row: typeof deliveries.$inferInsert): boolean {
    return tx.db.insert(deliveries).values(row).onConflictDoNothing().returning({ id: deliveries.id }).all().length > 0;
  }

  delivery(id: string): DeliveryRow | null {
    return this.db.select().from(deliveries).where(eq(deliveries.id, id)).get() ?? null;
  }

  deliveriesOfApproval(approvalId: string): DeliveryRow[] {
    return this.db.select().from(deliveries).where(eq(deliveries.approvalId, approvalId)).all();
  }

  updateDeliveryTx(tx: SqliteTx, id: string, patch: Partial<Omit<DeliveryRow, "id" | "eventId" | "tenant" | "endpoint" | "createdAt">>): void {
    tx.db.update(deliveries).set({ ...patch, updatedAt: tx.now }).where(eq(deliveries.id, id)).run();
  }

  insertAttemptTx(tx: SqliteTx, a: typeof deliveryAttempts.$inferInsert): void {
    tx.db.insert(deliveryAttempts).values(a).run();
  }

  attempts(deliveryId: string): AttemptRow[] {
    return this.db.select().from(deliveryAttempts).where(eq(deliveryAttempts.deliveryId, deliveryId)).orderBy(asc(deliveryAttempts.attempt)).all();
  }

  setRoutingTx(tx: SqliteTx, eventId: string, routing: Record<string, unknown>): void {
    tx.db.update(events).set({ routing }).where(eq(events.id, eventId)).run();
  }

  routing(eventId: string): Record<string, unknown> | null {
    return this.db.select({ routing: events.routing }).from(events).where(eq(events.id, eventId)).get()?.routing ?? null;
  }
}
