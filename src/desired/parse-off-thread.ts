import { AppError } from "../errors/index.ts";
import type { LocatedProblem } from "./parse.ts";
import type { DesiredState } from "./schema.ts";

/**
 * Desired-state files parsed off the event loop (SPEC §3.9), one at a time in one worker thread,
 * each within a time limit. A file that takes longer gets the worker terminated (the only way to
 * stop the yaml library mid-loop) and a 422 saying so; the next file gets a fresh worker. Files
 * waiting beyond a short queue are refused with 503 and Retry-After: operators apply a file now
 * and then, and a flood of them must not queue without bound.
 */

export type ParseResult = { state: DesiredState } | { errors: LocatedProblem[] };
type Reply = { id: number; result: ParseResult } | { id: number; error: string };

/** Longest a file may take to parse: the example file takes about 5 ms. */
export const DESIRED_PARSE_TIMEOUT_MS = 5000;
/** Files that may wait behind the one being parsed. */
export const DESIRED_PARSE_QUEUE = 8;

/**
 * From source, the worker sits beside this file. In the `bun build --compile` binary every module
 * reports the entry point's path instead, and the worker is a second entry point (scripts/build.sh
 * lists it) that resolves from the bundle root, src/.
 */
const WORKER_URL = import.meta.path.endsWith("parse-off-thread.ts") ? new URL("./parse-worker.ts", import.meta.url).href : "./desired/parse-worker.ts";

interface Job {
  id: number;
  text: string;
  file: string;
  resolve: (r: ParseResult) => void;
  reject: (e: Error) => void;
  timer?: Timer;
}

export class DesiredParser {
  private worker: Worker | null = null;
  private current: Job | null = null;
  private readonly queue: Job[] = [];
  private lastId = 0;

  constructor(
    private readonly timeoutMs = DESIRED_PARSE_TIMEOUT_MS,
    private readonly workerUrl = WORKER_URL,
  ) {}

  parse(text: string, file: string): Promise<ParseResult> {
    if (this.queue.length >= DESIRED_PARSE_QUEUE) {
      return Promise.reject(new AppError("unavailable", "too many desired-state files are being read at once; try again shortly", { retryAfter: 1 }));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ id: ++this.lastId, text, file, resolve, reject });
      this.next();
    });
  }

  private next(): void {
    if (this.current || this.queue.length === 0) return;
    const job = (this.current = this.queue.shift()!);
    const worker = (this.worker ??= this.spawn());
    // The clock starts once the worker runs: its start-up (100-500 ms on a busy machine) is not the file's.
    if (!this.ready.has(worker)) {
      worker.addEventListener("open", () => this.start(worker, job), { once: true });
      return;
    }
    this.start(worker, job);
  }

  private readonly ready = new WeakSet<Worker>();

  private start(worker: Worker, job: Job): void {
    this.ready.add(worker);
    if (worker !== this.worker || this.current !== job) return;
    job.timer = setTimeout(() => {
      this.fail(
        worker,
        new AppError("invalid_input", `${job.file} took longer than ${this.timeoutMs} ms to read: simplify it`, {
          errors: [{ field: `${job.file}:1:1`, message: `reading the file took longer than ${this.timeoutMs} ms (very large mappings, deep nesting or many aliases)` }],
        }),
      );
    }, this.timeoutMs);
    worker.postMessage({ id: job.id, text: job.text, file: job.file });
  }

  private spawn(): Worker {
    const worker = new Worker(this.workerUrl);
    worker.unref();
    worker.onmessage = ({ data }: MessageEvent<Reply>) => {
      const job = this.current;
      if (worker !== this.worker || !job || data.id !== job.id) return;
      clearTimeout(job.timer);
      this.current = null;
      if ("error" in data) job.reject(new Error(`desired-state parse failed: ${data.error}`));
      else job.resolve(data.result);
      this.next();
    };
    worker.onerror = (e) => this.fail(worker, new Error(`desired-state parser crashed: ${e.message.slice(0, 200)}`));
    worker.addEventListener("close", (e) => this.fail(worker, new Error(`desired-state parser exited (code ${(e as CloseEvent).code})`)));
    return worker;
  }

  private fail(worker: Worker, error: Error): void {
    if (worker !== this.worker) return;
    this.worker = null;
    worker.terminate();
    const job = this.current;
    this.current = null;
    if (job) {
      clearTimeout(job.timer);
      job.reject(error);
    }
    this.next();
  }

  /** Stop the worker (tests; the process exit does it otherwise). */
  close(): void {
    const w = this.worker;
    this.worker = null;
    w?.terminate();
  }
}
