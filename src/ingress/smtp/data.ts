import type { SMTPServerDataStream } from "smtp-server";
import type { Clock } from "../../core/clock.ts";
import { type Span, spanSince } from "../../events/envelope.ts";
import type { MailRecipient } from "../../store/index.ts";
import { type CountStage, SmtpReply, storageUnavailable } from "./guard.ts";
import type { MessageSpool, SpoolRef } from "./spool.ts";
import type { Transaction } from "./session.ts";

/**
 * The DATA stage (docs/architecture.md#the-smtp-pipeline): the message read whole within
 * smtp_max_message_size, then appended to the spool, whose promise resolves only once the bytes
 * are fdatasynced. Nothing is committed here; the accept stage commits the row that points at
 * the spooled bytes, and only after this stage has returned.
 */

/** A message whose bytes are on disk, ready for its row to commit. */
export interface SpooledMessage {
  raw: Buffer;
  spooled: SpoolRef;
  /** When its DATA began (clock ms): its queue id and its row's received_at. */
  receivedAt: number;
  recipients: MailRecipient[];
  trace: Span[];
}

export interface DataStageDeps {
  spool: MessageSpool;
  maxMessageBytes: number;
  clock: Clock;
  count: CountStage;
}

export class DataStage {
  constructor(private readonly deps: DataStageDeps) {}

  /**
   * Read the message of `txn` from `stream` and spool it. Refuses `552 5.3.4` over the size
   * limit (nothing spooled) and `421 4.4.2` when the client goes away first (`closed`).
   */
  async receive(
    stream: SMTPServerDataStream,
    txn: Transaction | undefined,
    closed: AbortSignal,
  ): Promise<SpooledMessage> {
    if (!txn || !txn.recipients.length) throw new Error("DATA without recipients");
    const { clock } = this.deps;
    const max = this.deps.maxMessageBytes;
    const dataStarted = performance.now();
    const receivedAt = clock.now();
    const raw = await readMessage(stream, max, closed);
    if (!raw || stream.sizeExceeded) {
      // smtp-server itself answers 552 5.3.4 for an oversized message; this is its fallback.
      throw new SmtpReply(552, "5.3.4", `message exceeds the maximum size of ${max} bytes`, "too_big");
    }
    const trace: Span[] = [spanSince("smtp.data", receivedAt, dataStarted, "ok", `${raw.length} bytes`)];

    const spoolStarted = performance.now();
    let spooled: SpoolRef;
    try {
      spooled = await this.deps.spool.append(raw);
    } catch (e) {
      this.deps.count("spool", storageUnavailable(e) ? "unavailable" : "error", spoolStarted);
      throw e;
    }
    this.deps.count("spool", "ok", spoolStarted);
    trace.push(spanSince("spool.write", clock.now() - (performance.now() - spoolStarted), spoolStarted));
    return { raw, spooled, receivedAt, recipients: txn.recipients, trace };
  }
}

/**
 * The message body; null when it is over `max` bytes (the rest is read and dropped, so the
 * client gets its 552 at the end of DATA rather than a broken pipe). Rejects when the client
 * goes away before the end of DATA: nothing has been written then.
 */
export function readMessage(stream: SMTPServerDataStream, max: number, closed: AbortSignal): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = () => reject(new SmtpReply(421, "4.4.2", "connection closed during DATA", "aborted"));
    if (closed.aborted) return onAbort();
    closed.addEventListener("abort", onAbort, { once: true });
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) chunks.push(chunk);
    });
    stream.once("error", (e) => {
      closed.removeEventListener("abort", onAbort);
      reject(e);
    });
    stream.once("end", () => {
      closed.removeEventListener("abort", onAbort);
      resolve(size > max ? null : Buffer.concat(chunks, size));
    });
  });
}
