import { eq } from "drizzle-orm";
import type { Span } from "../../events/envelope.ts";
import { mailMessages } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteTx } from "./committer.ts";

/** A recipient accepted at RCPT time, already resolved to its tenant, agent and binding. */
export interface MailRecipient {
  /** As the client wrote it. */
  address: string;
  tenant: string;
  agent: string;
  /** `agent+tag@…` → tag. */
  tag: string | null;
  binding: string;
}

export interface AcceptedMail {
  id: string;
  receivedAt: number;
  remoteIp: string;
  helo: string;
  mailFrom: string;
  recipients: MailRecipient[];
  tls: boolean;
  size: number;
  spool: { segment: string; offset: number; length: number };
  trace: Span[];
}

export type MailRow = typeof mailMessages.$inferSelect;

/** The SMTP ingress's rows (src/store/schema/mail.ts). */
export class SqliteMail {
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
}
