import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { traceText } from "./events.ts";

/**
 * One message accepted over SMTP (docs/architecture.md#the-smtp-pipeline): what the session said about it, where its raw bytes
 * are in the spool, and what processing made of it. Written, with its processing job, in the
 * transaction that precedes `250 2.0.0 queued as <id>`.
 */
export const mailMessages = sqliteTable(
  "mail_messages",
  {
    /** The queue id the client was told (`msg_…`). */
    id: text("id").primaryKey(),
    receivedAt: integer("received_at").notNull(),
    remoteIp: text("remote_ip").notNull(),
    helo: text("helo").notNull(),
    /** The envelope sender; "" for a bounce (`MAIL FROM:<>`). */
    mailFrom: text("mail_from").notNull(),
    /** Accepted recipients, each resolved at RCPT time: [{address, tenant, agent, tag, binding}]. */
    recipients: text("recipients", { mode: "json" }).$type<unknown[]>().notNull(),
    tls: integer("tls", { mode: "boolean" }).notNull(),
    size: integer("size").notNull(),
    spoolSegment: text("spool_segment").notNull(),
    spoolOffset: integer("spool_offset").notNull(),
    spoolLength: integer("spool_length").notNull(),
    /** Spans of the session's stages, carried into each event's trace. */
    trace: traceText("trace").notNull(),
    state: text("state", { enum: ["queued", "processed", "failed"] }).notNull(),
    /** The events made from it, one per tenant. */
    events: text("events", { mode: "json" }).$type<string[]>(),
    error: text("error"),
    processedAt: integer("processed_at"),
  },
  (t) => [index("mail_messages_received").on(t.receivedAt)],
);
