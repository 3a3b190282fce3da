import { bigint, boolean, index, jsonb, pgTable, text } from "drizzle-orm/pg-core";

/**
 * One message accepted over SMTP (docs/architecture.md#the-smtp-pipeline): what the session said about it, where its raw bytes
 * are in the spool, and what processing made of it. Written, with its processing job, in the
 * transaction that precedes `250 2.0.0 queued as <id>`.
 */
export const mailMessages = pgTable(
  "mail_messages",
  {
    /** The queue id the client was told (`msg_…`). */
    id: text("id").primaryKey(),
    receivedAt: bigint("received_at", { mode: "number" }).notNull(),
    remoteIp: text("remote_ip").notNull(),
    helo: text("helo").notNull(),
    /** The envelope sender; "" for a bounce (`MAIL FROM:<>`). */
    mailFrom: text("mail_from").notNull(),
    /** Accepted recipients, each resolved at RCPT time: [{address, tenant, agent, tag, binding}]. */
    recipients: jsonb("recipients").$type<unknown[]>().notNull(),
    tls: boolean("tls").notNull(),
    size: bigint("size", { mode: "number" }).notNull(),
    spoolSegment: text("spool_segment").notNull(),
    spoolOffset: bigint("spool_offset", { mode: "number" }).notNull(),
    spoolLength: bigint("spool_length", { mode: "number" }).notNull(),
    /** Spans of the session's stages, carried into each event's trace. */
    trace: jsonb("trace").$type<unknown[]>().notNull(),
    state: text("state", { enum: ["queued", "processed", "failed"] }).notNull(),
    /** The events made from it, one per tenant. */
    events: jsonb("events").$type<string[]>(),
    error: text("error"),
    processedAt: bigint("processed_at", { mode: "number" }),
  },
  (t) => [index("mail_messages_received").on(t.receivedAt)],
);
