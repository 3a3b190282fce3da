import type { OutboxEvent, Tx } from "./contract.ts";

const MAX_NOTIFIERS = 256;

/**
 * Who hears of the outbox's commits, the same on every driver: subscribers woken by their topics
 * (`onEmitted`) and counters told each committed entry's topic and tenant (`onCommitted`).
 */
export class OutboxWakeups {
  private readonly listeners = new Set<(topic: string | null) => void>();
  private readonly counters = new Set<(topic: string, tenant: string | null) => void>();
  /**
   * One wake-up per topic per commit (the commit runs each hook once): a subscriber is woken by
   * its own topics only. Topics are a fixed vocabulary; should there ever be more than
   * MAX_NOTIFIERS, the rest share a wake-up for everyone.
   */
  private readonly notifiers = new Map<string, () => void>();
  private readonly notifyAll = (): void => this.wake(null);

  private notifierFor(topic: string): () => void {
    let n = this.notifiers.get(topic);
    if (!n) {
      if (this.notifiers.size >= MAX_NOTIFIERS) return this.notifyAll;
      n = () => this.wake(topic);
      this.notifiers.set(topic, n);
    }
    return n;
  }

  /** Wake the subscribers of `topic` (null: everyone). */
  wake(topic: string | null): void {
    for (const l of this.listeners) l(topic);
  }

  /** Inside the unit that emitted `event`: wake and count once it committed. */
  emittedTx(tx: Tx, event: OutboxEvent): void {
    tx.afterCommit(this.notifierFor(event.topic));
    this.countedTx(tx, event);
  }

  /** Count `event` once its unit committed, without waking anyone (an announcement nobody follows, not written). */
  countedTx(tx: Tx, event: OutboxEvent): void {
    if (this.counters.size) {
      const tenant = event.tenant ?? null;
      tx.afterCommit(() => {
        for (const c of this.counters) c(event.topic, tenant);
      });
    }
  }

  onEmitted(listener: (topic: string | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Called with each committed entry's topic and tenant (metrics count them, the console tells its
   * pages what changed: neither needs a subscriber reading the log).
   */
  onCommitted(counter: (topic: string, tenant: string | null) => void): () => void {
    this.counters.add(counter);
    return () => this.counters.delete(counter);
  }
}
