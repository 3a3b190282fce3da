/**
 * Work that must not run on the event loop that serves ingress (parsing a hostile mail or YAML
 * file), in a worker thread: one job at a time, each within a time limit. A job that takes too
 * long, or a worker that crashes or exits, costs that job only: the worker is terminated (the one
 * way to stop a library mid-loop) and the next job gets a fresh one. The worker answers each
 * `{id, …message}` with `{id, result}` or `{id, error}`.
 */

export type WorkerReply<R> = { id: number; result: R } | { id: number; error: string };

export interface WorkerQueueOptions {
  /** Start a job's clock only once the worker runs: its start-up (100-500 ms on a busy machine) is not the job's. */
  clockFromOpen?: boolean;
  /** The error a job that ran out of time is rejected with. */
  timedOut(ms: number, message: object): Error;
}

interface Job<M, R> {
  id: number;
  message: M;
  timeoutMs: number;
  resolve: (r: R) => void;
  reject: (e: Error) => void;
  timer?: Timer;
}

export class WorkerQueue<M extends object, R> {
  private worker: Worker | null = null;
  private readonly ready = new WeakSet<Worker>();
  private current: Job<M, R> | null = null;
  private readonly queue: Job<M, R>[] = [];
  private lastId = 0;

  constructor(
    private readonly workerUrl: string,
    private readonly opts: WorkerQueueOptions,
  ) {}

  /** Jobs waiting or running. */
  get load(): number {
    return this.queue.length + (this.current ? 1 : 0);
  }

  /** Jobs waiting behind the running one. */
  get waiting(): number {
    return this.queue.length;
  }

  run(message: M, timeoutMs: number): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ id: ++this.lastId, message, timeoutMs, resolve, reject });
      this.next();
    });
  }

  /** Stop the worker (tests; the process exit does it otherwise). */
  close(): void {
    const w = this.worker;
    this.worker = null;
    w?.terminate();
  }

  private next(): void {
    if (this.current || this.queue.length === 0) return;
    const job = (this.current = this.queue.shift()!);
    const worker = (this.worker ??= this.spawn());
    if (this.opts.clockFromOpen && !this.ready.has(worker)) {
      worker.addEventListener("open", () => this.start(worker, job), { once: true });
      return;
    }
    this.start(worker, job);
  }

  private start(worker: Worker, job: Job<M, R>): void {
    this.ready.add(worker);
    if (worker !== this.worker || this.current !== job) return;
    // The timer also keeps the process alive while a job is under way; the worker does not.
    job.timer = setTimeout(() => this.fail(worker, this.opts.timedOut(job.timeoutMs, job.message)), job.timeoutMs);
    worker.postMessage({ ...job.message, id: job.id });
  }

  private spawn(): Worker {
    const worker = new Worker(this.workerUrl);
    worker.unref();
    worker.onmessage = ({ data }: MessageEvent<WorkerReply<R>>) => {
      const job = this.current;
      if (worker !== this.worker || !job || data.id !== job.id) return;
      clearTimeout(job.timer);
      this.current = null;
      if ("error" in data) job.reject(new Error(data.error));
      else job.resolve(data.result);
      this.next();
    };
    // An uncaught exception in the worker ends it and arrives here as Bun prints it: source lines,
    // then "RangeError: …" (or "error: …" for a plain Error), then the stack.
    worker.onerror = (e) =>
      this.fail(
        worker,
        new Error(`worker crashed: ${(/^(\w*Error|error): .*$/m.exec(e.message)?.[0] ?? e.message).slice(0, 200)}`),
      );
    worker.addEventListener("close", (e) =>
      this.fail(worker, new Error(`worker exited (code ${(e as CloseEvent).code})`)),
    );
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
}
