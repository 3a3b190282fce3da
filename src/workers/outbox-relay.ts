import type { Outbox, OutboxEntry } from "../store/index.ts";
import { retryDelay } from "../core/backoff.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Service } from "./service.ts";

export interface Subscriber {
  /** Durable cursor name: renaming a subscriber replays the whole retained outbox to it. */
  name: string;
  /** Topics it wants (exact, or a prefix ending in `.*`); all when omitted. */
  topics?: readonly string[];
  /** Must be idempotent by entry id: an entry is handed over at least once. */
  handle(entry: OutboxEntry): Promise<void> | void;
  /**
   * When present, takes every wanted entry of a read at once (in order) instead of `handle`:
   * a subscriber that writes can then commit them together. Idempotent like `handle`.
   */
  handleBatch?(entries: OutboxEntry[]): Promise<void>;
}

/** Topics named exactly: the outbox can filter them itself. */
const exact = (s: Subscriber): boolean => !!s.topics && s.topics.every((t) => !t.endsWith(".*"));

/** How far a subscriber's position may run ahead of its saved cursor over entries it does not want. */
const UNSAVED_SKIP = 1000;

const wants = (s: Subscriber, topic: string): boolean =>
  !s.topics || s.topics.some((t) => (t.endsWith(".*") ? topic.startsWith(t.slice(0, -1)) : t === topic));

/**
 * Hands outbox entries to in-process subscribers, each from its own durable cursor, strictly in
 * commit order. A failing subscriber is retried with backoff and holds back only itself.
 */
export class OutboxRelay implements Service {
  readonly name = "outbox-relay";
  private running = false;
  private loops: Promise<void>[] = [];
  private unsubscribe: (() => void) | null = null;
  private readonly stopSignals: (() => void)[] = [];
  /** Last time a subscriber's loop went round: /readyz treats a stale heartbeat as a dead relay. */
  heartbeat: number;
  private readonly clock: Clock;

  constructor(
    private readonly outbox: Outbox,
    private readonly subscribers: readonly Subscriber[],
    private readonly log: Logger,
    private readonly opts: { batch?: number; pollMs?: number; clock?: Clock } = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.heartbeat = this.clock.now();
    // Declared whether or not this process relays (on a shared database one node does): an
    // announcement a subscriber follows is written by every node.
    for (const s of subscribers) outbox.follow(s.topics ?? null);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const wakers = new Set<(topic: string | null) => void>();
    this.unsubscribe = this.outbox.onEmitted((topic) => {
      for (const w of wakers) w(topic);
    });
    this.loops = this.subscribers.map((s) => this.follow(s, wakers));
  }

  private async follow(sub: Subscriber, wakers: Set<(topic: string | null) => void>): Promise<void> {
    let position = await this.outbox.cursor(sub.name);
    let saved = position;
    let failures = 0;
    let wake: (() => void) | null = null;
    let woken = false;
    // A commit that emitted only topics this subscriber does not take does not wake it (the
    // router takes event.received, while every delivery emits a delivery.<state>).
    const waker = (topic: string | null) => {
      if (topic !== null && !wants(sub, topic)) return;
      woken = true;
      wake?.();
    };
    wakers.add(waker);
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      }).then(() => {
        wake = null;
      });
    this.stopSignals.push(() => wake?.());
    while (this.running) {
      this.heartbeat = this.clock.now();
      woken = false;
      let entries: OutboxEntry[] = [];
      let upTo = position;
      try {
        const limit = this.opts.batch ?? 200;
        if (exact(sub)) {
          // Only its topics leave the database: a subscriber to a few topics does not read every entry to
          // skip most of them.
          ({ entries, upTo } = await this.outbox.readTopics(position, limit, sub.topics!));
        } else {
          entries = await this.outbox.read(position, limit);
          upTo = entries.at(-1)?.seq ?? position;
        }
        if (sub.handleBatch) {
          const wanted = entries.filter((e) => wants(sub, e.topic));
          if (wanted.length) await sub.handleBatch(wanted);
          position = upTo;
        } else {
          let stopped = false;
          for (const entry of entries) {
            if (!this.running) {
              stopped = true;
              break;
            }
            if (wants(sub, entry.topic)) await sub.handle(entry);
            position = entry.seq;
          }
          if (!stopped) position = upTo;
        }
        failures = 0;
      } catch (e) {
        failures++;
        this.log.warn("outbox subscriber failed", { subscriber: sub.name, seq: position + 1, err: e });
      }
      // Saved after entries were handed over; over skipped ones only every UNSAVED_SKIP entries: a
      // restart scans those again (and skips them again), and the retention purge keeps them.
      if (position > saved && (entries.length > 0 || position - saved >= UNSAVED_SKIP)) {
        const at = position;
        await this.outbox.advance(sub.name, at).then(
          () => (saved = at),
          (e) => this.log.error("outbox cursor not saved", { err: e }),
        );
      }
      if (failures > 0) await sleep(retryDelay(failures, Math.random, { baseMs: 200, capMs: 60_000 }));
      else if (entries.length === 0 && !woken && this.running) await sleep(this.opts.pollMs ?? 1000);
    }
    wakers.delete(waker);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribe?.();
    for (const s of this.stopSignals) s();
    await Promise.allSettled(this.loops);
  }
}
