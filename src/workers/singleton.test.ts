import { expect, test } from "bun:test";
import { ManualClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import type { SingletonLeases } from "../store/index.ts";
import { ManualTimers } from "./schedule.ts";
import type { Service } from "./service.ts";
import { Singleton } from "./singleton.ts";

/** The contract's lease semantics (test/store-contract.ts), with a switch that makes one node's calls fail. */
class Leases implements SingletonLeases {
  private readonly held = new Map<string, { holder: string; expiresAt: number }>();
  readonly down = new Set<string>();
  constructor(private readonly clock: ManualClock) {}
  async acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    if (this.down.has(holder)) throw new Error("connection refused");
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

class Task implements Service {
  readonly name = "relay";
  running = false;
  start(): void {
    this.running = true;
  }
  async stop(): Promise<void> {
    this.running = false;
  }
}

const TTL = 15_000;

function setup() {
  const clock = new ManualClock();
  const timers = new ManualTimers(clock);
  const leases = new Leases(clock);
  const node = (holder: string) => {
    const task = new Task();
    const singleton = new Singleton(task, { leases, holder, ttlMs: TTL, clock, timers, log: silentLogger });
    return { task, singleton };
  };
  /** Move time in steps of one second, letting each step's renewals finish. */
  const advance = async (ms: number, each?: () => void) => {
    for (let t = 0; t < ms; t += 1000) {
      timers.advance(1000);
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      each?.();
    }
  };
  return { clock, leases, node, advance };
}

test("one node at a time runs the task; when the runner stops renewing, another takes over within one lease period, never overlapping", async () => {
  const { leases, node, advance } = setup();
  const a = node("node-a");
  const b = node("node-b");
  await a.singleton.start();
  await b.singleton.start();
  expect([a.task.running, b.task.running]).toEqual([true, false]);
  await advance(60_000, () => expect(a.task.running && b.task.running).toBe(false));
  expect([a.task.running, b.task.running]).toEqual([true, false]);
  // node-a loses the database: it stops the task before its lease can run out, node-b starts it after.
  leases.down.add("node-a");
  await advance(2 * TTL, () => expect(a.task.running && b.task.running).toBe(false));
  expect([a.task.running, b.task.running]).toEqual([false, true]);
  await a.singleton.stop();
  await b.singleton.stop();
  expect(b.task.running).toBe(false);
});

test("a node that dies without a word is replaced within one lease period and a third", async () => {
  const { clock, node, advance } = setup();
  const a = node("node-a");
  const b = node("node-b");
  await a.singleton.start();
  await b.singleton.start();
  // node-a's process is gone: its timer already armed renews once more, and none is armed after it.
  (a.singleton as unknown as { active: boolean }).active = false;
  const died = clock.now();
  let tookAt = 0;
  await advance(2 * TTL, () => {
    if (b.task.running && !tookAt) tookAt = clock.now();
  });
  expect(tookAt).toBeGreaterThan(died);
  expect(tookAt - died).toBeLessThanOrEqual(TTL + TTL / 3);
  await b.singleton.stop();
});

test("a clean stop stops the task and releases the lease: the other node takes over at its next renewal", async () => {
  const { node, advance } = setup();
  const a = node("node-a");
  const b = node("node-b");
  await a.singleton.start();
  await b.singleton.start();
  await a.singleton.stop();
  expect(a.task.running).toBe(false);
  await advance(TTL / 3);
  expect(b.task.running).toBe(true);
  expect(b.singleton.leader).toBe(true);
  await b.singleton.stop();
});
