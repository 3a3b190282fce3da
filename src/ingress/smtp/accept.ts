import type { SMTPServerSession } from "smtp-server";
import type { Clock } from "../../core/clock.ts";
import { newId } from "../../core/ids.ts";
import type { Logger } from "../../core/log.ts";
import { spanSince } from "../../events/envelope.ts";
import type { Storage } from "../../store/index.ts";
import type { SpooledMessage } from "./data.ts";
import { type CountStage, storageUnavailable } from "./guard.ts";

/**
 * The accept stage (docs/architecture.md#the-smtp-pipeline): the `mail_messages` row, pointing
 * at the spooled bytes, and its `mail.process` job in one group commit; only then the answer
 * `250 2.0.0 queued as <id>`. A crash before the commit leaves unreferenced spool bytes and no
 * 250, so the sender sends again. Parsing, sender authentication and normalizing happen later,
 * in the `mail.process` job (src/mail/process.ts).
 */

export const MAIL_PROCESS_JOB = "mail.process";

export interface AcceptStageDeps {
  storage: Storage;
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
    try {
      await storage.committer.run((tx) => {
        storage.mail.insertTx(tx, {
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
        });
        storage.queue.enqueueTx(tx, { kind: MAIL_PROCESS_JOB, payload: { id } });
      });
    } catch (e) {
      this.deps.count("commit", storageUnavailable(e) ? "unavailable" : "error", commitStarted);
      throw e;
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
