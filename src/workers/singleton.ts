import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { SingletonLeases } from "../store/index.ts";
import { systemTimers, type Timers } from "./schedule.ts";
import type { Service } from "./service.ts";

/** How long a node holds singleton work without renewing: the most a dead node's work waits for another node. */
export const SINGLETON_LEASE_MS = 15_000;

export interface SingletonOptions {
  leases: SingletonLeases;
  /** This node, as the leases know it. */
  holder: string;
  /** The lease period; the lease is renewed every third of it. */
  ttlMs?: number;
  clock: Clock;
  timers?: Timers;
  log: Logger;
}

/**
 * A service that runs on one node at a time (docs/architecture.md#several-nodes): it runs while
 * this node holds the lease named after it, renewed every third of the lease period. A node that
 * stops renewing (it died, or lost the database) lets the lease expire and another node's
 * Singleton starts the work within one lease period. A node that cannot renew stops the work
 * before its lease runs out, so two nodes never run it at once (their clocks' skew aside). A clean
 * stop releases the lease, and the next node takes over at its next renewal.
 */
export class Singleton<S extends Service> implements Service {
  readonly name: string;
  private active = false;
  private running = false;
  private heldUntil = 0;
  private lastTick: number;
  private cancel: (() => void) | null = null;
  private ticking: Promise<void> | null = null;
  private readonly ttlMs: number;

  constructor(
    readonly inner: S,
    private readonly opts: SingletonOptions,
  ) {
    this.name = inner.name;
    this.ttlMs = opts.ttlMs ?? SINGLETON_LEASE_MS;
    this.lastTick = opts.clock.now();
  }

  /** Whether this node runs the work now. */
  get leader(): boolean {
    return this.running;
  }

  /**
   * For readiness: the work's own heartbeat while it runs here, else the last renewal attempt
   * (a node standing by is healthy as long as it keeps asking).
   */
  get heartbeat(): number {
    const own = (this.inner as { heartbeat?: unknown }).heartbeat;
    return this.running && typeof own === "number" ? own : this.lastTick;
  }

  private get every(): number {
    return Math.max(1, Math.floor(this.ttlMs / 3));
  }

  async start(): Promise<void> {
    if (this.active) return;
    this.active = true;
    // The first node up starts the work during start-up, not a third of a lease later.
    await this.tick();
  }

  private arm(): void {
    if (!this.active) return;
    this.cancel = (this.opts.timers ?? systemTimers).after(this.every, () => {
      this.cancel = null;
      void this.tick();
    });
  }

  private tick(): Promise<void> {
    this.ticking = (async () => {
      const { clock, log } = this.opts;
      const asked = clock.now();
      let held: boolean;
      try {
        held = await this.opts.leases.acquire(this.name, this.opts.holder, this.ttlMs);
        if (held) this.heldUntil = asked + this.ttlMs;
      } catch (e) {
        // Unknown: keep the work only while the lease surely outlasts the next try.
        held = clock.now() + this.every < this.heldUntil;
        log.warn("could not renew a singleton lease", { task: this.name, error: (e as Error).message });
      }
      this.lastTick = clock.now();
      if (!this.active) return;
      if (held && !this.running) {
        this.running = true;
        try {
          await this.inner.start();
          log.info("this node runs the singleton task", { task: this.name });
        } catch (e) {
          this.running = false;
          log.error("a singleton task did not start", { task: this.name, error: (e as Error).message });
        }
      } else if (!held && this.running) {
        this.running = false;
        await this.inner.stop();
        log.info("another node runs the singleton task", { task: this.name });
      }
    })().finally(() => {
      this.ticking = null;
      this.arm();
    });
    return this.ticking;
  }

  async stop(): Promise<void> {
    this.active = false;
    this.cancel?.();
    this.cancel = null;
    await this.ticking;
    if (this.running) {
      this.running = false;
      await this.inner.stop();
    }
    await this.opts.leases.release(this.name, this.opts.holder).catch(() => {});
  }
}
