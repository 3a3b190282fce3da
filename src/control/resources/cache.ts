import type { ResourceStore } from "../../store/index.ts";

/**
 * Values derived from the configuration (a binding, a tenant's compiled routes, the number →
 * binding map), kept in memory until the configuration changes: the hot paths (every RCPT,
 * webhook, delivery) read them without a query. Everything is dropped when the resources'
 * generation moves, which it does after every committed change. A value loaded while a change
 * commits is not kept, so nothing stale outlives the change.
 */
export class ConfigCache<V> {
  private readonly values = new Map<string, V>();
  private generation = -1;

  constructor(
    private readonly resources: ResourceStore,
    private readonly load: (key: string) => Promise<V>,
    /** Unknown keys are cached too (a probe costs no query); past this many, start over. */
    private readonly maxEntries = 10_000,
  ) {}

  async get(key: string): Promise<V> {
    return this.value(key);
  }

  /** The value itself when it is kept (the hot paths' case: no promise to make), else its load. */
  value(key: string): V | Promise<V> {
    const generation = this.resources.generation;
    if (generation !== this.generation || this.values.size > this.maxEntries) {
      this.values.clear();
      this.generation = generation;
    }
    const kept = this.values.get(key);
    if (kept !== undefined || this.values.has(key)) return kept as V;
    return this.load(key).then((value) => {
      if (this.resources.generation === generation) this.values.set(key, value);
      return value;
    });
  }
}

/**
 * One kind's resources by tenant and name, each spec read once per configuration change: the
 * binding an ingress request names, the endpoint a delivery goes to. Null when there is none.
 */
export class SpecCache<S> {
  private readonly cache: ConfigCache<S | null>;

  constructor(resources: ResourceStore, kind: string) {
    this.cache = new ConfigCache(resources, async (key) => {
      const slash = key.indexOf("/");
      return (
        ((await resources.get({ tenant: key.slice(0, slash), kind, name: key.slice(slash + 1) }))?.spec as
          | S
          | undefined) ?? null
      );
    });
  }

  get(tenant: string, name: string): Promise<S | null> {
    return this.cache.get(`${tenant}/${name}`);
  }

  /** As `get`, without a promise when the spec is kept. */
  value(tenant: string, name: string): S | null | Promise<S | null> {
    return this.cache.value(`${tenant}/${name}`);
  }
}
