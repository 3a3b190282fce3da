import type { AcceptedMail, MailRow, MailStore } from "../contract.ts";
import type { PgTx } from "./committer.ts";
import { num, numOrNull, type PgDb } from "./db.ts";
import { spansFrom, spansJson } from "../spans.ts";

const toMail = (r: Record<string, unknown>): MailRow => ({
  id: r.id as string,
  receivedAt: num(r.received_at),
  remoteIp: r.remote_ip as string,
  helo: r.helo as string,
  mailFrom: r.mail_from as string,
  recipients: r.recipients as unknown[],
  tls: r.tls as boolean,
  size: num(r.size),
  spoolSegment: r.spool_segment as string,
  spoolOffset: num(r.spool_offset),
  spoolLength: num(r.spool_length),
  trace: spansFrom(r.trace),
  state: r.state as MailRow["state"],
  events: (r.events as string[] | null) ?? null,
  error: (r.error as string | null) ?? null,
  processedAt: numOrNull(r.processed_at),
});

/** The SMTP ingress's rows on PostgreSQL (src/store/sqlite/mail.ts is the model). */
export class PgMail implements MailStore {
  constructor(private readonly db: PgDb) {}

  insertTx(tx: PgTx, m: AcceptedMail): void {
    tx.conn.defer(
      "INSERT INTO mail_messages (id, received_at, remote_ip, helo, mail_from, recipients, tls, size, spool_segment, " +
        "spool_offset, spool_length, trace, state) " +
        "VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10, $11, $12::text::jsonb, 'queued')",
      [
        m.id,
        m.receivedAt,
        m.remoteIp,
        m.helo,
        m.mailFrom,
        JSON.stringify(m.recipients),
        m.tls,
        m.size,
        m.spool.segment,
        m.spool.offset,
        m.spool.length,
        spansJson(m.trace),
      ],
    );
  }

  finishTx(tx: PgTx, id: string, outcome: { events: string[]; error?: string | null }): void {
    tx.conn.defer(
      "UPDATE mail_messages SET state = $2, events = $3::text::jsonb, error = $4, processed_at = $5 WHERE id = $1",
      [id, outcome.error ? "failed" : "processed", JSON.stringify(outcome.events), outcome.error ?? null, tx.now],
    );
  }

  async getMessage(id: string): Promise<MailRow | null> {
    const [r] = await this.db.read("SELECT * FROM mail_messages WHERE id = $1", [id]);
    return r ? toMail(r) : null;
  }

  async listSpoolSegments(): Promise<Set<string>> {
    const rows = await this.db.read<{ s: string }>("SELECT DISTINCT spool_segment AS s FROM mail_messages");
    return new Set(rows.map((r) => r.s));
  }
}
