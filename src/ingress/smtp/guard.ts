import type { Logger } from "../../core/log.ts";
import type { Metrics } from "../../core/metrics.ts";
import { counterSeries, histogramSeries, seriesBy } from "../../core/prom.ts";
import { isStorageUnavailable, toSmtp } from "../../errors/index.ts";
import { SpoolUnavailableError } from "./spool.ts";

/**
 * The one guard every smtp-server callback goes through (docs/architecture.md#the-smtp-pipeline).
 * smtp-server answers a callback error with `err.responseCode || 550` and echoes `err.message`,
 * so an unexpected exception would bounce the mail and leak its text. Only an SmtpReply is
 * answered as it is; anything else is logged and answered from the one error model
 * (src/errors/to-smtp.ts): `452 4.3.1` when the disk or database cannot take writes, else
 * `451 4.3.0` (try again later), never a 5xx.
 */

/** A deliberate answer: the code, and the text starting with its enhanced status code. */
export class SmtpReply extends Error {
  override readonly name = "SmtpReply";
  constructor(
    readonly responseCode: number,
    enhanced: string,
    text: string,
    /** The stage and outcome for /metrics. */
    readonly outcome: string = "refused",
  ) {
    super(`${enhanced} ${text}`);
  }
}

/** A storage failure the sender should retry later (452 4.3.1), as opposed to a bug (451 4.3.0): the one classifier (src/errors/). */
export const storageUnavailable = (e: unknown): boolean =>
  e instanceof SpoolUnavailableError || isStorageUnavailable(e);

/**
 * What a failure that is no deliberate SmtpReply is answered: a storage failure 452 4.3.1,
 * anything else 451 4.3.0 (an exception is our failure, not the sender's, whatever kind it carries).
 */
export function replyTo(e: unknown): SmtpReply {
  const storage = storageUnavailable(e);
  const a = toSmtp(storage ? e : undefined);
  return new SmtpReply(a.code, a.enhanced, a.text, storage ? "unavailable" : "error");
}

/** Count one stage's outcome in /metrics; with `since` (performance.now()), its duration too. */
export type CountStage = (stage: string, outcome: string, since?: number) => void;

export function stageCounter(metrics: Metrics): CountStage {
  // Each stage and outcome's series resolved once (src/core/prom.ts): a message goes through a
  // dozen. Both come from this code, never from the input, so the maps stay small.
  const counted = seriesBy((key: string) => {
    const [stage = "", outcome = ""] = key.split(" ");
    return counterSeries(metrics.smtpStages, { stage, outcome });
  });
  const timed = seriesBy((stage: string) => histogramSeries(metrics.smtpStageSeconds, { stage }));
  return (stage, outcome, since) => {
    counted(`${stage} ${outcome}`)();
    if (since !== undefined) timed(stage)((performance.now() - since) / 1000);
  };
}

/** smtp-server's callback: an error is the answer, else `message` follows the default code. */
export type SmtpCallback = (err?: Error | null, message?: string) => void;

/**
 * Wrap a stage's handler as an smtp-server callback: the handler's return value becomes the
 * callback's message, an SmtpReply its answer, anything else a logged `451 4.3.0` (or `452 4.3.1`).
 * The callback is called once, whatever the handler does.
 */
export function guard<A extends unknown[]>(
  deps: { count: CountStage; log: Logger },
  stage: string,
  handler: (...args: A) => Promise<string | void>,
): (...args: [...A, SmtpCallback]) => void {
  return (...args) => {
    const callback = args.pop() as SmtpCallback;
    const started = performance.now();
    let answered = false;
    const answer = (err: Error | null, message?: string) => {
      if (answered) return;
      answered = true;
      callback(err, message);
    };
    Promise.resolve()
      .then(() => handler(...(args as unknown as A)))
      .then(
        (message) => {
          deps.count(stage, "ok", started);
          answer(null, message ?? undefined);
        },
        (e: unknown) => {
          if (e instanceof SmtpReply) {
            deps.count(stage, e.outcome, started);
            return answer(e);
          }
          const reply = replyTo(e);
          deps.count(stage, reply.outcome, started);
          deps.log.error("smtp stage failed", {
            stage,
            error: e instanceof Error ? e.message : String(e),
            code: (e as { code?: unknown })?.code,
          });
          answer(reply);
        },
      );
  };
}
