import type { Blobs, Retention, RetentionCutoffs, RetentionSwept } from "../contract.ts";
import type { SqliteHandle } from "../sqlite.ts";
import type { SqliteCommitter } from "./committer.ts";

/** Rows per unit of work: each batch is one short commit, so the sweep never holds the writer long. */
const BATCH = 1000;
/** Pages per `incremental_vacuum` step (16 MiB at 4 KiB pages). */
const VACUUM_PAGES = 4096;

/**
 * Retention of what events leave behind, per tenant (docs/operations.md#retention): events with
 * their deliveries and attempts, the parsed content of events (bodies, headers, attachment
 * blobs no kept event names), and delivery attempts; then the freed pages go back to the disk.
 */
export class SqliteRetention implements Retention {
  constructor(
    private readonly handle: SqliteHandle,
    private readonly committer: SqliteCommitter,
    private readonly blobs: Blobs,
  ) {}

  private get sqlite() {
    return this.handle.sqlite;
  }

  async sweep(c: {
    events: RetentionCutoffs;
    content: RetentionCutoffs;
    attempts: RetentionCutoffs;
  }): Promise<RetentionSwept> {
    const swept: RetentionSwept = { events: 0, contents: 0, attempts: 0, blobs: 0, runtimes: 0 };
    const tenants = this.sqlite.query<{ tenant: string }, []>("SELECT DISTINCT tenant FROM events").all();
    const candidates = new Set<string>();
    const attachmentsOf = this.sqlite.query<{ sha256: string | null }, [string, number]>(
      "SELECT json_extract(a.value, '$.sha256') AS sha256 FROM events e, json_each(e.envelope, '$.data.attachments') a " +
        "WHERE e.tenant = ? AND e.received_at < ? AND json_extract(e.envelope, '$.data.content_pruned_at') IS NULL",
    );
    const deleteEvents = this.sqlite.query<never, [string, number, number]>(
      "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE tenant = ? AND received_at < ? LIMIT ?)",
    );
    const pruneContent = this.sqlite.query<never, [number, string, number, number]>(
      "UPDATE events SET envelope = json_set(envelope, '$.data', json_object(" +
        "'from', json_extract(envelope, '$.data.from'), 'to', json_extract(envelope, '$.data.to'), " +
        "'subject', json_extract(envelope, '$.data.subject'), 'content_pruned_at', ?)), " +
        "trace = '[]' " +
        "WHERE id IN (SELECT id FROM events WHERE tenant = ? AND received_at < ? " +
        "AND json_extract(envelope, '$.data.content_pruned_at') IS NULL LIMIT ?)",
    );
    for (const { tenant } of tenants) {
      const events = c.events.cutoffFor(tenant);
      const content = Math.max(c.content.cutoffFor(tenant), events);
      for (const r of attachmentsOf.all(tenant, content)) if (r.sha256) candidates.add(r.sha256);
      for (;;) {
        const n = await this.committer.run(() => deleteEvents.run(tenant, events, BATCH).changes);
        swept.events += n;
        if (n < BATCH) break;
      }
      for (;;) {
        const n = await this.committer.run((tx) => pruneContent.run(tx.now, tenant, content, BATCH).changes);
        swept.contents += n;
        if (n < BATCH) break;
      }
    }
    swept.attempts = await this.sweepAttempts(c.attempts);
    swept.runtimes = await this.sweepRuntimes(c.events);
    swept.blobs = await this.deleteUnreferenced(candidates);
    return swept;
  }

  /** Attempts in id order (the order they were made), each against its delivery's tenant's cutoff. */
  private async sweepAttempts(c: RetentionCutoffs): Promise<number> {
    const page = this.sqlite.query<{ id: number; started_at: number; tenant: string }, [number, number]>(
      "SELECT a.id, a.started_at, d.tenant FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id " +
        "WHERE a.id > ? ORDER BY a.id LIMIT ?",
    );
    const remove = this.sqlite.query<never, [number]>("DELETE FROM delivery_attempts WHERE id = ?");
    const newest = c.newest();
    let removed = 0;
    for (let from = 0; ; ) {
      const rows = page.all(from, BATCH);
      if (rows.length === 0) break;
      const old = rows.filter((r) => r.started_at < c.cutoffFor(r.tenant));
      if (old.length) {
        await this.committer.run(() => {
          for (const r of old) remove.run(r.id);
        });
        removed += old.length;
      }
      // Later attempts are younger than every tenant's cutoff: nothing more to find.
      if (rows.every((r) => r.started_at >= newest)) break;
      from = rows.at(-1)!.id;
    }
    return removed;
  }

  /**
   * Deleted agent runtimes (the pool's history) older than their tenant's event retention, with
   * the tools provisioned for them and the tool calls they made; a warm runtime never claimed has
   * no tenant and goes by the default.
   */
  private async sweepRuntimes(c: RetentionCutoffs): Promise<number> {
    // In rowid order, which is the state index's own order within 'deleted': no sort.
    const page = this.sqlite.query<
      { rowid: number; id: string; tenant: string | null; deleted_at: number | null },
      [number, number]
    >(
      "SELECT rowid, id, tenant, deleted_at FROM agent_runtimes WHERE state = 'deleted' AND rowid > ? ORDER BY rowid LIMIT ?",
    );
    const removeCalls = this.sqlite.query<never, [string]>("DELETE FROM agent_tool_calls WHERE runtime_id = ?");
    const removeTools = this.sqlite.query<never, [string]>("DELETE FROM agent_tools WHERE runtime_id = ?");
    const remove = this.sqlite.query<never, [string]>("DELETE FROM agent_runtimes WHERE id = ? AND state = 'deleted'");
    let removed = 0;
    for (let from = 0; ; ) {
      const rows = page.all(from, BATCH);
      if (rows.length === 0) break;
      const old = rows.filter((r) => (r.deleted_at ?? 0) < c.cutoffFor(r.tenant));
      if (old.length) {
        await this.committer.run(() => {
          for (const r of old) {
            removeCalls.run(r.id);
            removeTools.run(r.id);
            removed += remove.run(r.id).changes;
          }
        });
      }
      from = rows.at(-1)!.rowid;
    }
    return removed;
  }

  /** Blobs that were attachments of pruned events, unless a kept event still names them. */
  private async deleteUnreferenced(candidates: Set<string>): Promise<number> {
    if (candidates.size === 0) return 0;
    const kept = this.sqlite
      .query<{ sha256: string }, []>(
        "SELECT DISTINCT json_extract(a.value, '$.sha256') AS sha256 FROM events e, json_each(e.envelope, '$.data.attachments') a",
      )
      .all();
    for (const k of kept) candidates.delete(k.sha256);
    return this.blobs.delete(candidates);
  }

  async vacuum(): Promise<{ pages: number; bytes: number }> {
    const free = () => this.sqlite.query<{ freelist_count: number }, []>("PRAGMA freelist_count").get()!.freelist_count;
    const pageSize = this.sqlite.query<{ page_size: number }, []>("PRAGMA page_size").get()!.page_size;
    let pages = 0;
    for (let before = free(); before > 0; before = free()) {
      await this.committer.run(() => this.sqlite.run(`PRAGMA incremental_vacuum(${VACUUM_PAGES})`));
      const after = free();
      if (after >= before) break;
      pages += before - after;
    }
    return { pages, bytes: pages * pageSize };
  }
}
