import type { SMTPServerSession } from "smtp-server";
import type { Clock } from "../../core/clock.ts";
import { newId } from "../../core/ids.ts";
import type { Logger } from "../../core/log.ts";
import { spanSince } from "../../events/envelope.ts";
import type { AcceptedMail, CommitOptions, Job, MailRow, Storage } from "../../store/index.ts";
import type { BornSlot } from "../../workers/job-runner.ts";
import type { SpooledMessage } from "./data.ts";
import { type CountStage, storageUnavailable } from "./guard.ts";

/**
 * The accept stage (docs/architecture.md#the-smtp-pipeline): the `mail_messages` row, pointing
 * at the spooled bytes, and its `mail.process` job in one group commit; only then the answer
 * `250 2.0.0 queued as <id>`. A crash before the commit leaves unreferenced spool bytes and no
 * 250, so the sender sends again. Parsing, sender authentication and normalizing happen later,
 * in the `mail.process` job (src/mail/process.ts).
 *
 * When this node's job runner has a free place, the job is born leased to it in the same commit
 * and starts once the commit is in, with the row and the bytes in memory (`MailProcessLocal`):
 * no claim, no read of the row or the spool. Otherwise, or if the process dies first, it is an
 * ordinary job: claimed by a worker, or recovered when its lease runs out.
 */

export const MAIL_PROCESS_JOB = "mail.process";

/**
 * The accept's commit and the processing's may wait 1 ms for company (`Committer.run`'s
 * `waitMs`). Under load an SMTP message's two commits arrive a few at a time per event-loop
 * turn, between the sessions' commands; a millisecond's wait doubles the messages per commit
 * (9 to 20 at 2,500 msg/s) and takes 9-22% off the CPU a message. A sender waits that much
 * longer for its 250; a webhook or a delivery that cannot wait commits at once, taking the
 * waiting units along.
 */
export const MAIL_COMMIT: CommitOptions = { waitMs: 1 };

/** What the accept stage hands its born-leased `mail.process` job in memory (JobContext.local). */
export interface MailProcessLocal {
  row: MailRow;
  raw: Uint8Array;
}

/** A place for a job born leased to this node's runner, when it has one free (JobRunner.reserve). */
export type ReserveJob = (kind: string) => BornSlot | null;

export interface AcceptStageDeps {
  storage: Storage;
  /** Absent, or no place free: the job waits for a worker to claim it. */
  reserve?: ReserveJob;
  clock: Clock;
  count: CountStage;
  log: Logger;
}

export class AcceptStage {
  constructor(private readonly deps: AcceptStageDeps) {}

  /** Commit the message's row and job; the reply text for smtp-server's 250. */
  async commit(message: SpooledMessage, session: SMTPServerSession): Promise<string> {
    const { raw, spooled, receivedAt, recipients, trace } = message;
    const { storage, clock } = this.deps;
    const id = newId("msg", receivedAt);
    const commitStarted = performance.now();
    const slot = this.deps.reserve?.(MAIL_PROCESS_JOB) ?? null;
    let made: { row: AcceptedMail; job: Job | null };
    try {
      made = await storage.committer.run((tx) => {
        const row: AcceptedMail = {
          id,
          receivedAt,
          remoteIp: session.remoteAddress,
          helo: session.hostNameAppearsAs ?? "",
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          recipients,
          tls: session.secure,
          size: raw.length,
          spool: spooled,
          trace: [...trace, spanSince("ingress.commit", clock.now(), commitStarted)],
        };
        storage.mail.insertTx(tx, row);
        const spec = { kind: MAIL_PROCESS_JOB, payload: { id } };
        if (slot) return { row, job: storage.queue.enqueueLeasedTx(tx, spec, slot.lease) };
        storage.queue.enqueueTx(tx, spec);
        return { row, job: null };
      }, MAIL_COMMIT);
    } catch (e) {
      slot?.release();
      this.deps.count("commit", storageUnavailable(e) ? "unavailable" : "error", commitStarted);
      throw e;
    }
    if (slot) {
      const { row, job } = made;
      // After this turn, once the 250 is on its way: the job's first synchronous steps (the sender
      // checks' start, the parser's message) would otherwise hold the answer back.
      if (job) setImmediate(() => slot.start(job, { row: queuedRow(row), raw } satisfies MailProcessLocal));
      else slot.release();
    }
    this.deps.count("commit", "ok", commitStarted);
    this.deps.log.info("mail queued", {
      queue_id: id,
      remote_ip: session.remoteAddress,
      size: raw.length,
      recipients: recipients.length,
      tls: session.secure,
    });
    return `2.0.0 queued as ${id}`;
  }
}

/** The row `insertTx` wrote, as `getMessage` reads it back. */
function queuedRow(m: AcceptedMail): MailRow {
  return {
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
    events: null,
    error: null,
    processedAt: null,
  };
}
