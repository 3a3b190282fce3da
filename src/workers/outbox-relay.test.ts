import { afterEach, describe, expect, test } from "bun:test";
import type { OutboxEntry } from "../store/contract.ts";
import { tempStorage, until } from "../../test/helpers/storage.ts";
import { silentLogger } from "../core/log.ts";
import { OutboxRelay, type Subscriber } from "./outbox-relay.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function relayOn(storage: ReturnType<typeof tempStorage>, subs: Subscriber[]) {
  const relay = new OutboxRelay(storage.outbox, subs, silentLogger, { pollMs: 60_000 });
  relay.start();
  cleanups.push(() => relay.stop());
  return relay;
}

describe("OutboxRelay", () => {
  test("each subscriber receives the entries it wants, in commit order, woken by the commit", async () => {
    const storage = tempStorage();
    cleanups.push(() => storage.dispose());
    const all: unknown[] = [];
    const tasks: unknown[] = [];
    relayOn(storage, [
      { name: "all", handle: (e) => void all.push(e.payload) },
      { name: "tasks", topics: ["task.*"], handle: (e) => void tasks.push(e.payload) },
    ]);
    for (let i = 0; i < 5; i++)
      await storage.outbox.emit({ topic: i % 2 ? "task.done" : "event.received", payload: i });
    await until("delivery", () => all.length === 5 && tasks.length === 2);
    expect(all).toEqual([0, 1, 2, 3, 4]);
    expect(tasks).toEqual([1, 3]);
    await until("cursors saved", async () => (await storage.outbox.cursor("tasks")) === 5);
  });

  test("a failing subscriber is retried and holds back only itself", async () => {
    const storage = tempStorage();
    cleanups.push(() => storage.dispose());
    let failuresLeft = 2;
    const flaky: number[] = [];
    const steady: number[] = [];
    relayOn(storage, [
      {
        name: "flaky",
        handle: (e: OutboxEntry) => {
          if ((e.payload as number) === 1 && failuresLeft-- > 0) throw new Error("downstream busy");
          flaky.push(e.payload as number);
        },
      },
      { name: "steady", handle: (e) => void steady.push(e.payload as number) },
    ]);
    for (let i = 0; i < 3; i++) await storage.outbox.emit({ topic: "t", payload: i });
    await until("steady to see everything", () => steady.length === 3);
    await until("flaky to catch up", () => flaky.length >= 3, 10_000);
    // At least once, in order: the entry before the failure may be seen again, none is skipped.
    expect([...new Set(flaky)]).toEqual([0, 1, 2]);
    expect(failuresLeft).toBeLessThanOrEqual(0);
  });

  test("a restarted relay resumes after the last entry each subscriber finished", async () => {
    const storage = tempStorage();
    cleanups.push(() => storage.dispose());
    const first: unknown[] = [];
    const relay = relayOn(storage, [{ name: "console", handle: (e) => void first.push(e.payload) }]);
    await storage.outbox.emit({ topic: "t", payload: "a" });
    await until("a", () => first.length === 1);
    await until("cursor saved", async () => (await storage.outbox.cursor("console")) === 1);
    await relay.stop();
    await storage.outbox.emit({ topic: "t", payload: "b" });
    const second: unknown[] = [];
    relayOn(storage, [{ name: "console", handle: (e) => void second.push(e.payload) }]);
    await until("b", () => second.length === 1);
    expect(second).toEqual(["b"]);
  });

  test("a subscriber to exact topics reads only those; its cursor passes what it skipped, saved now and then", async () => {
    const storage = tempStorage();
    cleanups.push(() => storage.dispose());
    const seen: unknown[] = [];
    const handled: number[] = [];
    let witnessed = 0;
    await storage.committer.run((tx) => {
      tx.emit({ topic: "delivery.delivered", payload: "x" });
      tx.emit({ topic: "event.received", payload: "e1" });
      tx.emit({ topic: "delivery.failed", payload: "y" });
    });
    relayOn(storage, [
      {
        name: "router",
        topics: ["event.received"],
        handle: () => {},
        handleBatch: async (es) => void seen.push(...es.map((e) => e.payload)),
      },
      { name: "approvals", topics: ["approval.decided"], handle: (e) => void handled.push(e.payload as number) },
      // Woken by the same commits as the approvals subscriber would be: once it has seen them all,
      // a woken approvals subscriber would have read by then.
      { name: "witness", topics: ["delivery.*"], handle: () => void witnessed++ },
    ]);
    await until("routed", () => seen.length === 1);
    expect(seen).toEqual(["e1"]);
    // The router handed one over: its cursor is saved past everything read, the skipped entries too.
    await until("router cursor", async () => (await storage.outbox.cursor("router")) === 3);
    // The approvals subscriber wanted none: it does not write its cursor for what it skipped …
    expect(await storage.outbox.cursor("approvals")).toBe(0);
    // … and commits of other topics do not even wake it: it reads nothing while a thousand pass.
    const reads = { approvals: 0 };
    const readTopics = storage.outbox.readTopics.bind(storage.outbox);
    storage.outbox.readTopics = (after, limit, topics) => {
      if (topics.includes("approval.decided")) reads.approvals++;
      return readTopics(after, limit, topics);
    };
    await Promise.all(
      Array.from({ length: 1000 }, (_, i) => storage.outbox.emit({ topic: "delivery.delivered", payload: i })),
    );
    await until("the witness to see the thousand", () => witnessed === 1002);
    expect(reads.approvals).toBe(0);
    expect(await storage.outbox.cursor("approvals")).toBe(0);
    // Its own topic wakes it: it reads past everything since, hands the entry over, saves its cursor.
    await storage.outbox.emit({ topic: "approval.decided", payload: 7 });
    await until("approval", () => handled.length === 1);
    expect(handled).toEqual([7]);
    await until("approvals cursor at the head", async () => (await storage.outbox.cursor("approvals")) === 1004);
  });
});
