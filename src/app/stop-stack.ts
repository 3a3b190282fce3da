import type { Service } from "../workers/service.ts";

/** A stop that failed: the others ran anyway. */
export interface StopFailure {
  name: string;
  error: unknown;
}

/**
 * What start-up has acquired so far (the data dir's lock, the database, workers, listeners,
 * maintenance), each with how to give it back. `stop` gives everything back in the reverse order
 * it was acquired, each once, and goes on past a stop that fails: so shutdown is start-up undone,
 * and a start-up that fails half-way undoes exactly what it had acquired. `C` is what every stop
 * is told (the shutdown's deadline).
 */
export class StopStack<C = void> {
  private readonly entries: { name: string; stop: (ctx: C) => unknown }[] = [];
  private stopped: Promise<StopFailure[]> | null = null;

  /** Register `value`, just acquired, to be given back with `stop(value, ctx)`; returns `value`. */
  add<T>(name: string, value: T, stop: (value: T, ctx: C) => unknown): T {
    if (this.stopped) throw new Error(`${name} acquired after the stop began`);
    this.entries.push({ name, stop: (ctx) => stop(value, ctx) });
    return value;
  }

  /** Start a service and register its stop; a service whose start throws is not registered. */
  async start<S extends Service>(service: S): Promise<S> {
    await service.start();
    return this.add(service.name, service, (s) => s.stop());
  }

  /** Names of what is held, in the order it was acquired. */
  get names(): string[] {
    return this.entries.map((e) => e.name);
  }

  /** Give everything back, last acquired first; a second call gets the first one's result. */
  stop(ctx: C): Promise<StopFailure[]> {
    this.stopped ??= (async () => {
      const failures: StopFailure[] = [];
      for (const { name, stop } of this.entries.splice(0).reverse()) {
        try {
          await stop(ctx);
        } catch (error) {
          failures.push({ name, error });
        }
      }
      return failures;
    })();
    return this.stopped;
  }
}
