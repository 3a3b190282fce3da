import { newId } from "../../core/ids.ts";
import type { Outbox, OutboxEntry, OutboxEvent } from "../contract.ts";
import { OutboxWakeups } from "../outbox-wakeups.ts";
import { OutboxFollows } from "../outbox-follows.ts";
import type { PgCommitter, PgTx, Tail } from "./committer.ts";
import { num, type PgDb } from "./db.ts";

/**
 * The outbox's appends are serialized by this transaction-level advisory lock, so that entries
 * become visible in `seq` order: without it, two nodes' transactions could commit in the other
 * order than they took their numbers, and a reader that passed the later number would never see
 * the earlier one. One lock per group commit, not per entry, taken at the end of its transaction
 * (the entries are written last, just before the COMMIT), so it is held for those statements and
 * the commit only.
 */
export const OUTBOX_LOCK = 0x6f62_7801;
/** The channel a commit that emitted NOTIFYs, with the topics it emitted. */
export const OUTBOX_CHANNEL = "agentowl_outbox";

const toEntry = (r: Record<string, unknown>): OutboxEntry => ({
  seq: num(r.seq),
  id: r.id as string,
  topic: r.topic as string,
  tenant: (r.tenant as string | null) ?? null,
  payload: r.payload ?? null,
  createdAt: num(r.created_at),
});

/**
 * The transactional outbox on PostgreSQL (src/store/sqlite/outbox.ts is the model): entries are
 * written in the unit's transaction, read as a log in commit order from durable cursors.
 */
export class PgOutbox implements Outbox {
  private readonly wakeups = new OutboxWakeups();

  constructor(
    private readonly db: PgDb,
    private readonly committer: PgCommitter,
  ) {}

  emitTx(tx: PgTx, event: OutboxEvent): string {
    if (event.ifFollowed && !this.follows.has(event.topic)) {
      // Nobody reads it from the log: counted as if written, nothing more.
      this.wakeups.countedTx(tx, event);
      return "";
    }
    const id = newId("obx", tx.now);
    tx.atEnd(this.tail, { id, event, at: tx.now });
    this.wakeups.emittedTx(tx, event);
    if (tx.once(`${OUTBOX_CHANNEL}:${event.topic}`)) {
      tx.conn.defer("SELECT pg_notify($1, $2)", [OUTBOX_CHANNEL, `${this.db.node} ${event.topic}`]);
    }
    return id;
  }

  /** The batch's entries in one statement, in the order they were emitted (their seq follows it). */
  private readonly tail: Tail<{ id: string; event: OutboxEvent; at: number }> = {
    lock: OUTBOX_LOCK,
    // After the audit chain's entries: both under the one lock.
    order: 1,
    write: (conn, rows) => {
      conn.defer(
        "INSERT INTO outbox (id, topic, tenant, payload, created_at) " +
          "SELECT e->>'id', e->>'topic', e->>'tenant', e->'payload', (e->>'at')::bigint " +
          "FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS x(e, n) ORDER BY n",
        [
          JSON.stringify(
            rows.map((r) => ({
              id: r.id,
              topic: r.event.topic,
              tenant: r.event.tenant ?? null,
              payload: r.event.payload ?? null,
              at: r.at,
            })),
          ),
        ],
      );
    },
  };

  onCommitted(counter: (topic: string, tenant: string | null) => void): () => void {
    return this.wakeups.onCommitted(counter);
  }

  private readonly follows = new OutboxFollows();

  follow(topics: readonly string[] | null): () => void {
    return this.follows.add(topics);
  }

  forget(subscriber: string): Promise<void> {
    return this.committer.run((tx) => {
      tx.conn.defer("DELETE FROM outbox_cursors WHERE subscriber = $1", [subscriber]);
    });
  }

  emit(event: OutboxEvent): Promise<string> {
    return this.committer.run((tx) => this.emitTx(tx, event));
  }

  async read(afterSeq: number, limit: number): Promise<OutboxEntry[]> {
    const rows = await this.db.read("SELECT * FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2", [afterSeq, limit]);
    return rows.map(toEntry);
  }

  async readTopics(
    afterSeq: number,
    limit: number,
    topics: readonly string[],
  ): Promise<{ entries: OutboxEntry[]; upTo: number }> {
    // One statement, one snapshot: the head and the entries agree.
    const rows = await this.db.read(
      "SELECT o.*, h.head FROM (SELECT max(seq) AS head FROM outbox) h " +
        "LEFT JOIN LATERAL (SELECT * FROM outbox WHERE seq > $1 AND topic = ANY($3::text[]) ORDER BY seq LIMIT $2) o ON true",
      [afterSeq, limit, [...topics]],
    );
    const head = rows[0]?.head == null ? afterSeq : num(rows[0].head);
    const entries = rows.filter((r) => r.seq !== null && r.seq !== undefined).map(toEntry);
    const upTo = entries.length >= limit ? entries.at(-1)!.seq : Math.max(afterSeq, head, entries.at(-1)?.seq ?? 0);
    return { entries, upTo };
  }

  async cursor(subscriber: string): Promise<number> {
    const [r] = await this.db.read("SELECT position FROM outbox_cursors WHERE subscriber = $1", [subscriber]);
    return r ? num(r.position) : 0;
  }

  advance(subscriber: string, seq: number): Promise<void> {
    return this.committer.run((tx) => {
      // A cursor never moves backwards, even if a slow relay reports late.
      tx.conn.defer(
        "INSERT INTO outbox_cursors (subscriber, position, updated_at) VALUES ($1, $2, $3) " +
          "ON CONFLICT (subscriber) DO UPDATE SET position = greatest(outbox_cursors.position, excluded.position), " +
          "updated_at = excluded.updated_at",
        [subscriber, seq, tx.now],
      );
    });
  }

  purge(retentionMs: number): Promise<number> {
    return this.committer.run(
      (tx) =>
        tx.conn.query(
          "DELETE FROM outbox WHERE seq <= (SELECT coalesce(min(position), 0) FROM outbox_cursors) AND created_at < $1 " +
            "RETURNING seq",
          [tx.now - retentionMs],
        ).length,
    );
  }

  /** Wake this node's subscribers when another node's commit emitted. */
  async listen(): Promise<{ unlisten(): Promise<void> }> {
    return this.db.pool.listen(OUTBOX_CHANNEL, (payload) => {
      const [from, topic] = payload.split(" ");
      if (from === this.db.node) return;
      this.wakeups.wake(topic ?? null);
    });
  }

  onEmitted(listener: (topic: string | null) => void): () => void {
    return this.wakeups.onEmitted(listener);
  }
}
