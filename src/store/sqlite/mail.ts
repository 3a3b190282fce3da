import { eq } from "drizzle-orm";
import type { AcceptedMail, MailRow, MailStore } from "../contract.ts";
import { mailMessages } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

same<Same<MailRow, typeof mailMessages.$inferSelect>>(true);

/**
 * The SMTP ingress's rows (src/store/schema/mail.ts). `get` and `spoolSegments` are SQLite's
 * synchronous reads for the callers that have not moved to `getMessage` and `listSpoolSegments`.
 */
export class SqliteMail implements MailStore {
  constructor(private readonly db: Db) {}

  insertTx(tx: SqliteTx, m: AcceptedMail): void {
    tx.db
      .insert(mailMessages)
      .values({
        id: m.id,
        receivedAt: m.receivedAt,
        remoteIp: m.remoteIp,
        helo: m.helo,
        mailFrom: m.mailFrom,
        recipients: m.recipients,
        tls: m.tls,
        size: m.size,
        spoolSegment: m.spool.segment,
        spoolOffset: m.spool.offset,
        spoolLength: m.spool.length,
        trace: m.trace,
        state: "queued",
      })
      .run();
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
    return this.db.select().from(mailMessages).where(eq(mailMessages.id, id)).get() ?? null;
  }

  finishTx(tx: SqliteTx, id: string, outcome: { events: string[]; error?: string | null }): void {
    tx.db
      .update(mailMessages)
      .set({
        state: outcome.error ? "failed" : "processed",
        events: outcome.events,
        error: outcome.error ?? null,
        processedAt: tx.now,
      })
      .where(eq(mailMessages.id, id))
      .run();
  }

  async getMessage(id: string): Promise<MailRow | null> {
    return this.get(id);
  }

  async listSpoolSegments(): Promise<Set<string>> {
    return this.spoolSegments();
  }
}
