import type { Statement } from "bun:sqlite";
import type { AcceptedMail, MailRow, MailStore } from "../contract.ts";
import { mailMessages } from "../schema/index.ts";
import type { Db, SqliteHandle } from "../sqlite.ts";
import type { SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";
import { spansFrom, spansJson } from "../spans.ts";

same<Same<MailRow, typeof mailMessages.$inferSelect>>(true);

/**
 * The SMTP ingress's rows (src/store/schema/mail.ts). `get` and `spoolSegments` are SQLite's
 * synchronous reads for the callers that have not moved to `getMessage` and `listSpoolSegments`.
 */
/** A mail_messages row as SQLite returns it: JSON columns as text, booleans as 0/1. */
interface StoredRow {
  id: string;
  receivedAt: number;
  remoteIp: string;
  helo: string;
  mailFrom: string;
  recipients: string;
  tls: number;
  size: number;
  spoolSegment: string;
  spoolOffset: number;
  spoolLength: number;
  trace: string;
  state: MailRow["state"];
  events: string | null;
  error: string | null;
  processedAt: number | null;
}

/**
 * The SMTP ingress's rows (src/store/schema/mail.ts). `get` and `spoolSegments` are SQLite's
 * synchronous reads for the callers that have not moved to `getMessage` and `listSpoolSegments`.
 * The three statements of every message (its insert before the 250, its read and its update in
 * the mail.process job) are plain bun:sqlite, prepared once: drizzle builds and prepares its
 * query again on every call, which measured as much CPU as the statements themselves.
 */
export class SqliteMail implements MailStore {
  private readonly db: Db;
  private readonly insert: Statement<
    never,
    [string, number, string, string, string, string, number, number, string, number, number, string]
  >;
  private readonly finish: Statement<never, [string, string, string | null, number, string]>;
  private readonly byId: Statement<StoredRow, [string]>;

  constructor(handle: SqliteHandle) {
    this.db = handle.db;
    this.insert = handle.sqlite.prepare(
      "INSERT INTO mail_messages (id, received_at, remote_ip, helo, mail_from, recipients, tls, size, " +
        "spool_segment, spool_offset, spool_length, trace, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued')",
    );
    this.finish = handle.sqlite.prepare(
      "UPDATE mail_messages SET state = ?, events = ?, error = ?, processed_at = ? WHERE id = ?",
    );
    this.byId = handle.sqlite.prepare(
      "SELECT id, received_at AS receivedAt, remote_ip AS remoteIp, helo, mail_from AS mailFrom, recipients, tls, " +
        "size, spool_segment AS spoolSegment, spool_offset AS spoolOffset, spool_length AS spoolLength, trace, " +
        "state, events, error, processed_at AS processedAt FROM mail_messages WHERE id = ?",
    );
  }

  insertTx(_tx: SqliteTx, m: AcceptedMail): void {
    this.insert.run(
      m.id,
      m.receivedAt,
      m.remoteIp,
      m.helo,
      m.mailFrom,
      JSON.stringify(m.recipients),
      m.tls ? 1 : 0,
      m.size,
      m.spool.segment,
      m.spool.offset,
      m.spool.length,
      spansJson(m.trace),
    );
  }

  /** Every spool segment a message row refers to. */
  spoolSegments(): Set<string> {
    return new Set(
      this.db
        .selectDistinct({ segment: mailMessages.spoolSegment })
        .from(mailMessages)
        .all()
        .map((r) => r.segment),
    );
  }

  get(id: string): MailRow | null {
    const r = this.byId.get(id);
    if (!r) return null;
    return {
      ...r,
      recipients: JSON.parse(r.recipients) as unknown[],
      tls: r.tls !== 0,
      trace: spansFrom(JSON.parse(r.trace)),
      events: r.events === null ? null : (JSON.parse(r.events) as string[]),
    };
  }

  finishTx(tx: SqliteTx, id: string, outcome: { events: string[]; error?: string | null }): void {
    this.finish.run(
      outcome.error ? "failed" : "processed",
      JSON.stringify(outcome.events),
      outcome.error ?? null,
      tx.now,
      id,
    );
  }

  async getMessage(id: string): Promise<MailRow | null> {
    return this.get(id);
  }

  async listSpoolSegments(): Promise<Set<string>> {
    return this.spoolSegments();
  }
}
