import { type Clock, systemClock } from "../../core/clock.ts";
import type { SingletonLeases } from "../contract.ts";

/**
 * Singleton leases on SQLite: in memory. One process uses the database (it holds the data dir's
 * lock), so the holders that can compete are this process's own; nothing needs to outlive it.
 */
export class SqliteLeases implements SingletonLeases {
  private readonly held = new Map<string, { holder: string; expiresAt: number }>();

  constructor(private readonly clock: Clock = systemClock) {}

  async acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    const lease = this.held.get(name);
    if (lease && lease.holder !== holder && lease.expiresAt > now) return false;
    this.held.set(name, { holder, expiresAt: now + ttlMs });
    return true;
  }

  async release(name: string, holder: string): Promise<void> {
    if (this.held.get(name)?.holder === holder) this.held.delete(name);
  }
}
