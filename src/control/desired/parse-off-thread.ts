import { workerPath } from "../../core/worker-path.ts";
import { WorkerQueue } from "../../core/worker-queue.ts";
import { AppError } from "../../errors/index.ts";
import type { LocatedProblem, LocatedRef } from "./parse.ts";
import type { DesiredState } from "./schema.ts";

/**
 * Desired-state files parsed off the event loop (guarantee 9 (docs/guarantees.md)), one at a time in one worker thread,
 * each within a time limit. A file that takes longer gets the worker terminated (the only way to
 * stop the yaml library mid-loop) and a 422 saying so; the next file gets a fresh worker. Files
 * waiting beyond a short queue are refused with 503 and Retry-After: operators apply a file now
 * and then, and a flood of them must not queue without bound.
 */

export type ParseResult = { state: DesiredState; refs: LocatedRef[] } | { errors: LocatedProblem[] };

/** Longest a file may take to parse: the example file takes about 5 ms. */
export const DESIRED_PARSE_TIMEOUT_MS = 5000;
/** Files that may wait behind the one being parsed. */
export const DESIRED_PARSE_QUEUE = 8;

const WORKER_URL = workerPath("control/desired/parse-worker.ts");

/** One file at a time in one worker, each within the time limit (src/core/worker-queue.ts). */
export class DesiredParser {
  private readonly worker: WorkerQueue<{ text: string; file: string }, ParseResult>;

  constructor(
    private readonly timeoutMs = DESIRED_PARSE_TIMEOUT_MS,
    workerUrl = WORKER_URL,
  ) {
    this.worker = new WorkerQueue(workerUrl, {
      clockFromOpen: true,
      timedOut: (ms, message) => {
        const file = (message as { file: string }).file;
        return new AppError("invalid_input", `${file} took longer than ${ms} ms to read: simplify it`, {
          errors: [
            {
              field: `${file}:1:1`,
              message: `reading the file took longer than ${ms} ms (very large mappings, deep nesting or many aliases)`,
            },
          ],
        });
      },
    });
  }

  parse(text: string, file: string): Promise<ParseResult> {
    if (this.worker.waiting >= DESIRED_PARSE_QUEUE) {
      return Promise.reject(
        new AppError("unavailable", "too many desired-state files are being read at once; try again shortly", {
          retryAfter: 1,
        }),
      );
    }
    return this.worker.run({ text, file }, this.timeoutMs).catch((e: Error) => {
      throw e instanceof AppError ? e : new Error(`desired-state parser: ${e.message}`);
    });
  }

  /** Stop the worker (tests; the process exit does it otherwise). */
  close(): void {
    this.worker.close();
  }
}
