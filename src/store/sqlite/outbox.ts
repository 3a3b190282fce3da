import { and, eq, gt, lt, sql } from "drizzle-orm";
import { newId } from "../../core/ids.ts";
import type { Outbox, OutboxEntry, OutboxEvent } from "../contract.ts";
import { OutboxWakeups } from "../outbox-wakeups.ts";
import { OutboxFollows } from "../outbox-follows.ts";
import { outbox, outboxCursors } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";

/**
 * The transactional outbox: `emitTx` writes an event in the same transaction as the state change
 * that caused it, so both commit or neither does. Subscribers read the outbox as a log in commit
 * order, each from its own durable cursor (src/workers/outbox-relay.ts), at least once.
 */

export class SqliteOutbox implements Outbox {
  private readonly wakeups = new OutboxWakeups();
  private readonly insert;
  // The relay reads and advances after every commit that emitted: prepared once.
  private readonly readAfter;
  private readonly readTopicsAfter;
  private readonly head;
  private readonly upsertCursor;

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
    this.readAfter = db
      .select()
      .from(outbox)
      .where(gt(outbox.seq, sql.placeholder("after")))
      .orderBy(outbox.seq)
      .limit(sql.placeholder("limit"))
      .prepare();
    // A subscriber reads only its topics: SQLite skips the others without making rows of them.
    this.readTopicsAfter = db
      .select()
      .from(outbox)
      .where(
        and(
          gt(outbox.seq, sql.placeholder("after")),
          sql`${outbox.topic} IN (SELECT value FROM json_each(${sql.placeholder("topics")}))`,
        ),
      )
      .orderBy(outbox.seq)
      .limit(sql.placeholder("limit"))
      .prepare();
    this.head = db
      .select({ seq: sql<number | null>`max(${outbox.seq})` })
      .from(outbox)
      .prepare();
    this.upsertCursor = db
      .insert(outboxCursors)
      .values({
        subscriber: sql.placeholder("subscriber"),
        position: sql.placeholder("position"),
        updatedAt: sql.placeholder("now"),
      })
      .onConflictDoUpdate({
        target: outboxCursors.subscriber,
        // A cursor never moves backwards, even if a slow relay reports late.
        set: { position: sql`max(${outboxCursors.position}, excluded.position)`, updatedAt: sql`excluded.updated_at` },
      })
      .prepare();
  }

  emitTx(tx: SqliteTx, event: OutboxEvent): string {
    if (event.ifFollowed && !this.follows.has(event.topic)) {
      // Nobody reads it from the log: counted as if written, nothing more.
      this.wakeups.countedTx(tx, event);
      return "";
    }
    const id = newId("obx", tx.now);
    this.insert.run({
      id,
      topic: event.topic,
      tenant: event.tenant ?? null,
      payload: event.payload ?? null,
      now: tx.now,
    });
    this.wakeups.emittedTx(tx, event);
    return id;
  }

  onCommitted(counter: (topic: string, tenant: string | null) => void): () => void {
    return this.wakeups.onCommitted(counter);
  }

  private readonly follows = new OutboxFollows();

  follow(topics: readonly string[] | null): () => void {
    return this.follows.add(topics);
  }

  /** Drop a retired subscriber's cursor: the retention purge goes by the slowest cursor. */
  forget(subscriber: string): Promise<void> {
    return this.committer.run(() => {
      this.db.delete(outboxCursors).where(eq(outboxCursors.subscriber, subscriber)).run();
    });
  }

  emit(event: OutboxEvent): Promise<string> {
    return this.committer.run((tx) => this.emitTx(tx, event));
  }

  async read(afterSeq: number, limit: number): Promise<OutboxEntry[]> {
    return this.readAfter.all({ after: afterSeq, limit });
  }

  async readTopics(
    afterSeq: number,
    limit: number,
    topics: readonly string[],
  ): Promise<{ entries: OutboxEntry[]; upTo: number }> {
    // Both statements run in this one synchronous call: no commit can land between them.
    const head = this.head.get()?.seq ?? afterSeq;
    const entries = this.readTopicsAfter.all({ after: afterSeq, limit, topics: JSON.stringify(topics) });
    const upTo = entries.length >= limit ? entries.at(-1)!.seq : Math.max(afterSeq, head, entries.at(-1)?.seq ?? 0);
    return { entries, upTo };
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
      const slowest =
        this.db
          .select({ min: sql<number | null>`min(${outboxCursors.position})` })
          .from(outboxCursors)
          .get()?.min ?? 0;
      return this.db
        .delete(outbox)
        .where(sql`${outbox.seq} <= ${slowest} AND ${lt(outbox.createdAt, tx.now - retentionMs)}`)
        .returning({ seq: outbox.seq })
        .all().length;
    });
  }

  onEmitted(listener: (topic: string | null) => void): () => void {
    return this.wakeups.onEmitted(listener);
  }
}
