/**
 * The topics the outbox's subscribers read (exact, or a prefix ending in `.*`; null: every
 * topic), as each process declares them (src/workers/outbox-relay.ts). An announcement
 * (`OutboxEvent.ifFollowed`) of a topic nobody follows is counted but not written.
 */
export class OutboxFollows {
  private readonly declared = new Map<object, readonly string[] | null>();
  /** Answers per topic, made again whenever the declarations change. */
  private known = new Map<string, boolean>();

  add(topics: readonly string[] | null): () => void {
    const key = {};
    this.declared.set(key, topics);
    this.known = new Map();
    return () => {
      this.declared.delete(key);
      this.known = new Map();
    };
  }

  has(topic: string): boolean {
    let yes = this.known.get(topic);
    if (yes === undefined) {
      yes = false;
      for (const topics of this.declared.values())
        if (topics === null || topics.some((t) => matches(t, topic))) yes = true;
      this.known.set(topic, yes);
    }
    return yes;
  }
}

const matches = (pattern: string, topic: string): boolean =>
  pattern.endsWith(".*") ? topic.startsWith(pattern.slice(0, -1)) : pattern === topic;
