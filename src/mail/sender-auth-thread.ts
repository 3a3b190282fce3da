import { type Clock, systemClock } from "../core/clock.ts";
import { postBatcher } from "../core/post-batch.ts";
import { workerPath } from "../core/worker-path.ts";
import type { DnsResolver } from "./dns.ts";
import {
  DEFAULT_TOTAL_TIMEOUT_MS,
  dkimInput,
  type SenderAuthInput,
  type SenderAuthOptions,
  type SenderAuthResult,
  unfinishedResult,
  verifySender,
} from "./sender-auth.ts";

/**
 * Sender authentication off the event loop that serves ingress. A signed message's body hash and
 * its signatures' RSA checks cost about 15 ms a MiB (a 25 MiB message with five signatures of
 * different lengths, seconds), and the loop also answers SMTP, webhooks and deliveries: so
 * `verifySender` runs in a worker thread (sender-auth-worker.ts), many messages at once, and only
 * its DNS questions come back here, to the resolver the caller gave (one cache for the process).
 * Both ways, what one turn of the event loop sends goes as one message (src/core/post-batch.ts):
 * under load that halved the crossing's CPU on either side.
 * A small unsigned message stays on the calling thread (`check`): nothing of it is hashed.
 *
 * The worker's own deadline (`totalTimeoutMs`) ends a verification that waits for DNS; one whose
 * thread has been busy `stuckAfterMs` past that deadline (a library caught in a loop) gets the
 * thread terminated: every message it held is answered temperror, and the next one gets a fresh
 * thread. A crash is answered the same way. The thread starts with the first message: an idle
 * appliance does not pay for it.
 */

/** A message to verify, with the time its DKIM checks take as "now". */
export interface AuthRequest {
  id: number;
  input: SenderAuthInput;
  now: number;
  totalTimeoutMs: number;
}
export interface AuthReply {
  id: number;
  result: SenderAuthResult;
}
/** A DNS question of message `request`, asked of this thread. */
export interface AuthQuestion {
  question: number;
  request: number;
  name: string;
  rrtype: string;
}
export type AuthAnswer =
  | { question: number; records: unknown }
  | { question: number; error: { code?: string; message: string } };

/** The largest header block of an unsigned message checked on the calling thread (`check`). */
export const IN_PROCESS_MAX_BYTES = 64 * 1024;

/** How long past its deadline a verification may run before its thread counts as stuck. */
export const STUCK_AFTER_MS = 30_000;

const WORKER_URL = workerPath("mail/sender-auth-worker.ts");

interface Pending {
  input: SenderAuthInput;
  resolver: DnsResolver;
  started: number;
  /** performance.now() past which the thread is stuck. */
  stuckAt: number;
  resolve: (result: SenderAuthResult) => void;
}

export class SenderAuthThread {
  private worker: Worker | null = null;
  /** To the current worker, gathered per turn (src/core/post-batch.ts). */
  private post: (item: AuthRequest | AuthAnswer) => void = () => {};
  private readonly pending = new Map<number, Pending>();
  private lastId = 0;
  private watchdog: { timer: Timer; at: number } | null = null;

  constructor(
    private readonly workerUrl: string = WORKER_URL,
    private readonly stuckAfterMs: number = STUCK_AFTER_MS,
  ) {}

  /** Verifications under way. */
  get load(): number {
    return this.pending.size;
  }

  /**
   * `verifySender(input, opts)` where it belongs: on this thread when the DKIM pass reads no more
   * than a small header block (an unsigned message: SPF and DMARC, a few microseconds besides the
   * DNS), else in the thread. A message that is small and unsigned costs 1.4 times the CPU in
   * the thread (its DNS questions and its result cross between the threads) for work that never
   * holds the loop; a signed one, or one without an end to its header block, is hashed there.
   */
  check(input: SenderAuthInput, opts: SenderAuthOptions): Promise<SenderAuthResult> {
    const whole = bytesOf(input.raw);
    const read = smallHeaderRead(whole);
    return read !== whole ? verifySender({ ...input, raw: read }, opts) : this.send(input, whole, opts);
  }

  /** `verifySender(input, opts)`, in the thread. Never throws; a failure of the thread is every verdict temperror. */
  verify(input: SenderAuthInput, opts: SenderAuthOptions): Promise<SenderAuthResult> {
    return this.send(input, smallHeaderRead(bytesOf(input.raw)), opts);
  }

  /** `input` to the thread with `read` (what its DKIM pass reads) as its bytes. */
  private send(input: SenderAuthInput, read: Buffer, opts: SenderAuthOptions): Promise<SenderAuthResult> {
    const totalTimeoutMs = opts.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS;
    const clock: Clock = opts.clock ?? systemClock;
    const id = ++this.lastId;
    // Only what the checks read crosses over, and of a view only its own bytes (a view is cloned
    // with all of its buffer).
    const raw = read.byteLength === read.buffer.byteLength ? read : new Uint8Array(read);
    return new Promise((resolve) => {
      const started = performance.now();
      const stuckAt = started + totalTimeoutMs + this.stuckAfterMs;
      try {
        this.worker ??= this.spawn();
      } catch (e) {
        // A thread that cannot even be made (a missing module arrives later, as a crash).
        resolve(unfinishedResult(input, `sender authentication did not start: ${String(e).slice(0, 200)}`, 0));
        return;
      }
      this.pending.set(id, { input, resolver: opts.resolver, started, stuckAt, resolve });
      this.post({ id, input: { ...input, raw }, now: clock.now(), totalTimeoutMs });
      if (!this.watchdog || stuckAt < this.watchdog.at) this.arm(stuckAt);
    });
  }

  /** Stop the thread; verifications under way are answered temperror (tests; the process exit does it otherwise). */
  close(): void {
    if (this.worker) this.restart(this.worker, "the appliance is stopping");
  }

  private spawn(): Worker {
    const worker = new Worker(this.workerUrl);
    worker.unref();
    // A worker terminated meanwhile gets nothing: its batch is dropped.
    this.post = postBatcher((items) => worker === this.worker && worker.postMessage(items));
    worker.onmessage = ({ data }: MessageEvent<(AuthReply | AuthQuestion)[]>) => {
      for (const item of data) {
        if (worker !== this.worker) return;
        if ("question" in item) {
          this.answer(item);
          continue;
        }
        const p = this.pending.get(item.id);
        if (!p) continue;
        this.pending.delete(item.id);
        if (this.pending.size === 0) this.disarm();
        p.resolve(item.result);
      }
    };
    // An uncaught exception ends the worker and arrives as Bun prints it: the "…Error: …" line.
    worker.onerror = (e) =>
      this.restart(
        worker,
        `its thread crashed: ${(/^(\w*Error|error): .*$/m.exec(e.message)?.[0] ?? e.message).slice(0, 200)}`,
      );
    worker.addEventListener("close", (e) => this.restart(worker, `its thread exited (code ${(e as CloseEvent).code})`));
    return worker;
  }

  /** A question of one of the thread's messages, asked of that message's resolver. */
  private answer({ question, request, name, rrtype }: AuthQuestion): void {
    const reply = this.post;
    const p = this.pending.get(request);
    if (!p) return reply({ question, error: { code: "ETIMEOUT", message: `ETIMEOUT ${rrtype} ${name}` } });
    // async: a resolver that throws instead of rejecting is answered the same way.
    (async () => p.resolver(name, rrtype))().then(
      (records) => reply({ question, records }),
      (e: unknown) =>
        reply({
          question,
          error: { code: (e as { code?: string } | null)?.code, message: e instanceof Error ? e.message : String(e) },
        }),
    );
  }

  private arm(at: number): void {
    this.disarm();
    const timer = setTimeout(() => this.watch(), Math.max(0, at - performance.now()));
    this.watchdog = { timer, at };
  }

  private disarm(): void {
    if (this.watchdog) clearTimeout(this.watchdog.timer);
    this.watchdog = null;
  }

  /** The watchdog's round: a verification past its time means the thread is stuck. */
  private watch(): void {
    this.watchdog = null;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    for (const p of this.pending.values()) {
      if (p.stuckAt <= now) {
        if (this.worker)
          this.restart(this.worker, `no result after ${Math.round(now - p.started)} ms: its thread was restarted`);
        return;
      }
      next = Math.min(next, p.stuckAt);
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
  }

  /** The thread is gone or stuck: it is terminated, and each of its messages answered temperror. */
  private restart(worker: Worker, why: string): void {
    if (worker !== this.worker) return;
    this.worker = null;
    worker.terminate();
    this.disarm();
    const now = performance.now();
    const held = [...this.pending.values()];
    this.pending.clear();
    for (const p of held)
      p.resolve(unfinishedResult(p.input, `sender authentication did not finish: ${why}`, now - p.started));
  }
}

const bytesOf = (raw: Uint8Array): Buffer => Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);

/**
 * What the DKIM pass reads (`dkimInput`: an unsigned message's header block, else all of it)
 * when the header block ends within IN_PROCESS_MAX_BYTES; past that, all of it, unread: looking
 * for signature fields in a header block of megabytes is work for the thread, not this one.
 */
function smallHeaderRead(whole: Buffer): Buffer {
  const end = whole.indexOf("\r\n\r\n");
  return end >= 0 && end + 4 <= IN_PROCESS_MAX_BYTES ? dkimInput(whole) : whole;
}

/** The process's one sender-authentication thread (src/mail/process.ts). */
export const senderAuthThread = new SenderAuthThread();
