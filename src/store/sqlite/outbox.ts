import { eq, gt, lt, sql } from "drizzle-orm";
import { newId } from "../../core/ids.ts";
import type { Outbox, OutboxEntry, OutboxEvent } from "../contract.ts";
import { outbox, outboxCursors } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";

/**
 * The transactional outbox: `emitTx` writes an event in the same transaction as the state change
 * that caused it, so both commit or neither does. Subscribers read the outbox as a log in commit
 * order, each from its own durable cursor (src/core/outbox-relay.ts), at least once.
 */
export class SqliteOutbox implements Outbox {
  private readonly listeners = new Set<() => void>();
  private readonly insert;
  // The relay reads and advances after every commit that emitted: prepared once.
  private readonly readAfter;
  private readonly upsertCursor;
  private readonly notify = (): void => {
    for (const l of this.listeners) l();
  };

  constructor(
    private readonly db: Db,
    private readonly committer: SqliteCommitter,
  ) {
    this.insert = db
      .insert(outbox)
      .values({
        id: sql.placeholder("id"),
        topic: sql.placeholder("topic"),
        tenant: sql.placeholder("tenant"),
        payload: sql.placeholder("payload"),
        createdAt: sql.placeholder("now"),
      })
      .prepare();
    this.readAfter = db.select().from(outbox).where(gt(outbox.seq, sql.placeholder("after"))).orderBy(outbox.seq).limit(sql.placeholder("limit")).prepare();
    this.upsertCursor = db
      .insert(outboxCursors)
      .values({ subscriber: sql.placeholder("subscriber"), position: sql.placeholder("position"), updatedAt: sql.placeholder("now") })
      .onConflictDoUpdate({
        target: outboxCursors.subscriber,
        // A cursor never moves backwards, even if a slow relay reports late.
        set: { position: sql`max(${outboxCursors.position}, excluded.position)`, updatedAt: sql`excluded.updated_at` },
      })
      .prepare();
  }

  emitTx(tx: SqliteTx, event: OutboxEvent): string {
    const id = newId("obx", tx.now);
    this.insert.run({ id, topic: event.topic, tenant: event.tenant ?? null, payload: event.payload ?? null, now: tx.now });
    tx.afterCommit(this.notify);
    return id;
  }

  emit(event: OutboxEvent): Promise<string> {
    return this.committer.run((tx) => this.emitTx(tx, event));
  }

  async read(afterSeq: number, limit: number): Promise<OutboxEntry[]> {
    return this.readAfter.all({ after: afterSeq, limit });
  }

  async cursor(subscriber: string): Promise<number> {
    return this.db.select().from(outboxCursors).where(eq(outboxCursors.subscriber, subscriber)).get()?.position ?? 0;
  }

  advance(subscriber: string, seq: number): Promise<void> {
    return this.committer.run((tx) => {
      this.upsertCursor.run({ subscriber, position: seq, now: tx.now });
    });
  }

  purge(retentionMs: number): Promise<number> {
    return this.committer.run((tx) => {
      const slowest = this.db.select({ min: sql<number | null>`min(${outboxCursors.position})` }).from(outboxCursors).get()?.min ?? 0;
      return this.db
        .delete(outbox)
        .where(sql`${outbox.seq} <= ${slowest} AND ${lt(outbox.createdAt, tx.now - retentionMs)}`)
        .returning({ seq: outbox.seq }).all().length;
    });
  }

  onEmitted(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
