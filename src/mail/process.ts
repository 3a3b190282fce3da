import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { type JobHandler, PermanentJobError } from "../workers/job-runner.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { Metrics } from "../core/metrics.ts";
import { type Envelope, newEnvelope, type Span, spanOf } from "../events/envelope.ts";
import { commitRouted, type EventRouting, insertEventTx } from "../events/handoff.ts";
import { type ParsedMail, parseMail } from "./parse.ts";
import type { SenderAuthResult } from "./sender-auth.ts";
import { senderAuthThread } from "./sender-auth-thread.ts";
import type { Blobs } from "../store/index.ts";
import type { MailRecipient, MailRow, Storage } from "../store/index.ts";
import {
  type CountStage,
  MAIL_COMMIT,
  type MailProcessLocal,
  type MessageSpool,
  stageCounter,
} from "../ingress/smtp/index.ts";

/**
 * The `mail.process` job: the asynchronous half of the SMTP pipeline (docs/architecture.md#the-smtp-pipeline). It reads the
 * spooled message, parses it (mailparser) and checks its sender (SPF, DKIM, DMARC, ARC) at the
 * same time, then normalizes it into one `email.received` envelope per tenant it was addressed
 * to, and commits the events together with the message's new state.
 *
 * It is safe to run twice (a worker killed after the commit, before its ack): a message that is
 * no longer `queued` is done, and each event's idempotency key is a hash of the message's bytes
 * and its envelope (`mailIdempotencyKey`), so the second run finds the events of the first.
 */

export interface MailProcessorDeps {
  storage: Storage;
  spool: MessageSpool;
  blobs: Blobs;
  resolver: (name: string, rrtype: string) => Promise<unknown>;
  metrics: Metrics;
  /** Routing at the commit; without it the events reach the router through the outbox. */
  routing?: EventRouting;
  /** Our name in Authentication-Results. */
  mta?: string;
  /** The clock the spans and the DKIM time checks read (default: the system's). */
  clock?: Clock;
}

async function timed<T>(
  count: CountStage,
  clock: Clock,
  stage: string,
  work: () => Promise<T>,
  outcomeOf: (v: T) => string,
): Promise<{ value: T; span: Span }> {
  const start = clock.now();
  const t0 = performance.now();
  const value = await work();
  const ms = performance.now() - t0;
  const outcome = outcomeOf(value);
  count(stage, outcome, t0);
  return {
    value,
    span: spanOf(
      stage === "parse" ? "mime.parse" : "sender.auth",
      start,
      ms,
      outcome === "ok" ? "ok" : "error",
      outcome === "ok" ? undefined : outcome,
    ),
  };
}

export function mailProcessor(deps: MailProcessorDeps): JobHandler {
  const mta = deps.mta ?? hostname();
  const clock = deps.clock ?? systemClock;
  const count = stageCounter(deps.metrics);
  return async (job, ctx) => {
    const id = (job.payload as { id?: unknown }).id;
    if (typeof id !== "string") throw new PermanentJobError("mail.process without a message id");
    // Born leased at the accept (src/ingress/smtp/accept.ts): the row just committed and its bytes.
    const local = ctx?.local as MailProcessLocal | undefined;
    const mine = local?.row.id === id ? local : undefined;
    const row = mine?.row ?? (await deps.storage.mail.getMessage(id));
    if (!row) throw new PermanentJobError(`message ${id} is not in the database`);
    if (row.state !== "queued") return; // done by an earlier run whose ack was lost
    const raw =
      mine?.raw ??
      (await deps.spool.read({ segment: row.spoolSegment, offset: row.spoolOffset, length: row.spoolLength }));
    if (!raw) {
      await deps.storage.committer.run((tx) =>
        deps.storage.mail.finishTx(tx, id, { events: [], error: "the spooled message is gone (purged by retention)" }),
      );
      throw new PermanentJobError(`message ${id}: spool segment ${row.spoolSegment} is gone`);
    }

    const [parsed, auth, digest] = await Promise.all([
      timed(
        count,
        clock,
        "parse",
        () => parseMail(raw, { blobs: deps.blobs }),
        (p) => (p.parse_warnings.some((w) => w.startsWith("parser failed")) ? "degraded" : "ok"),
      ),
      timed(
        count,
        clock,
        "auth",
        () =>
          senderAuthThread.check(
            { raw, remoteIp: row.remoteIp, helo: row.helo, mailFrom: row.mailFrom, mta },
            { resolver: deps.resolver, clock },
          ),
        (a) => (a.spf === "temperror" || a.dkim === "temperror" || a.dmarc === "temperror" ? "temperror" : "ok"),
      ),
      rawDigest(raw),
    ]);

    const normalizeStarted = performance.now();
    const envelopes = normalize(row, parsed.value, auth.value, digest);
    const normalizeSpan: Span = spanOf(
      "normalize",
      clock.now(),
      performance.now() - normalizeStarted,
      "ok",
      `${envelopes.length} event(s)`,
    );
    count("normalize", "ok", normalizeStarted);
    const trace = [...row.trace, parsed.span, auth.span, normalizeSpan];

    // The events (routed), the message's new state and the job's ack commit together.
    const acked = await commitRouted(deps.routing, envelopes, (plan) =>
      deps.storage.committer.run((tx) => {
        const ids = envelopes.map((e) => insertEventTx(deps.storage, tx, e, trace, plan).id);
        deps.storage.mail.finishTx(tx, id, { events: ids });
        return tx.ack(job);
      }, MAIL_COMMIT),
    );
    // A lease that expired meanwhile: the events are in, and the job's next run finds them done.
    return acked ? "acked" : undefined;
  };
}

/** Bytes hashed per event-loop turn: about 1 ms each, so a 25 MiB message never stalls ingress. */
const DIGEST_SLICE = 1024 * 1024;

/**
 * SHA-256 of the raw message, hex: the part of every event key that says "the same bytes".
 * Hashed a slice per turn of the event loop, since a message may be hundreds of megabytes.
 */
export async function rawDigest(raw: Uint8Array): Promise<string> {
  const hash = createHash("sha256");
  for (let at = 0; at < raw.length; at += DIGEST_SLICE) {
    if (at > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    hash.update(raw.subarray(at, at + DIGEST_SLICE));
  }
  return hash.digest("hex");
}

/**
 * The idempotency key of a mail event (docs/envelope.md; guarantee 3 in docs/guarantees.md): a
 * hash of the raw bytes, the envelope sender and the event's recipients (lower-cased, in any
 * order). Only a true retransmission (a client that resends the same bytes to the same
 * recipients, say after losing our 250, or this job run again after a crash) finds an earlier
 * event with it. The Message-ID plays no part: a second message that reuses one, and the
 * recipients a client sends again in a new transaction after `452 4.5.3`, are other envelopes
 * and get their own events. 69 characters.
 */
export function mailIdempotencyKey(
  digest: string,
  mailFrom: string,
  recipients: readonly { address: string }[],
): string {
  const rcpts = [...new Set(recipients.map((r) => r.address.toLowerCase()))].sort();
  return `mail:${createHash("sha256")
    .update(JSON.stringify([digest, mailFrom, rcpts]))
    .digest("hex")}`;
}

/**
 * One `email.received` envelope per tenant (docs/envelope.md): the recipients of one tenant share an
 * event, whose `agent` is the first of them and `data.agents` all of them, in RCPT order. Each
 * tenant's event carries only its own recipients, so tenants learn nothing of one another.
 * `digest` is the raw message's `rawDigest`, for the events' idempotency keys.
 */
export function normalize(row: MailRow, mail: ParsedMail, auth: SenderAuthResult, digest: string): Envelope[] {
  const byTenant = new Map<string, MailRecipient[]>();
  for (const r of row.recipients as MailRecipient[]) {
    const list = byTenant.get(r.tenant) ?? [];
    list.push(r);
    byTenant.set(r.tenant, list);
  }
  return [...byTenant.entries()].map(([tenant, rcpts]) => {
    const first = rcpts[0]!;
    return newEnvelope(
      {
        type: "email.received",
        tenant,
        agent: first.agent,
        channel: "email",
        source: {
          binding: first.binding,
          remote_ip: row.remoteIp,
          helo: row.helo,
          queue_id: row.id,
          mail_from: row.mailFrom,
          rcpt_to: rcpts.map((r) => r.address),
          tls: row.tls,
        },
        idempotency_key: mailIdempotencyKey(digest, row.mailFrom, rcpts),
        data: {
          from: mail.from,
          sender: mail.sender,
          reply_to: mail.reply_to,
          to: mail.to,
          cc: mail.cc,
          subject: mail.subject,
          date: mail.date,
          message_id: mail.message_id,
          in_reply_to: mail.in_reply_to,
          references: mail.references,
          agents: [...new Set(rcpts.map((r) => r.agent))],
          tags: [...new Set(rcpts.flatMap((r) => (r.tag ? [r.tag] : [])))],
          text: mail.text,
          html: mail.html,
          attachments: mail.attachments,
          headers: mail.headers,
          size: row.size,
          auth: { spf: auth.spf, dkim: auth.dkim, dmarc: auth.dmarc, arc: auth.arc },
          auth_details: auth.details,
          parse_warnings: mail.parse_warnings,
        },
      },
      row.receivedAt,
      row.id,
    );
  });
}
