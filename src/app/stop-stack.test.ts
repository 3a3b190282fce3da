import { describe, expect, test } from "bun:test";
import { StopStack } from "./stop-stack.ts";

describe("StopStack", () => {
  test("gives back everything in the reverse order it was acquired, each with the stop's context", async () => {
    const stack = new StopStack<{ deadline: number }>();
    const stopped: string[] = [];
    for (const name of ["lock", "storage", "workers", "listeners"])
      stack.add(name, name, (value, ctx) => void stopped.push(`${value}@${ctx.deadline}`));
    expect(stack.names).toEqual(["lock", "storage", "workers", "listeners"]);
    expect(await stack.stop({ deadline: 7 })).toEqual([]);
    expect(stopped).toEqual(["listeners@7", "workers@7", "storage@7", "lock@7"]);
    expect(stack.names).toEqual([]);
  });

  test("stops each thing once, however often and however concurrently stop is called", async () => {
    const stack = new StopStack();
    const counts = { a: 0, b: 0 };
    stack.add("a", counts, async (c) => {
      await Promise.resolve();
      c.a++;
    });
    stack.add("b", counts, (c) => c.b++);
    const [first, second] = await Promise.all([stack.stop(), stack.stop()]);
    await stack.stop();
    expect(counts).toEqual({ a: 1, b: 1 });
    expect(first).toBe(second);
  });

  test("a stop that fails does not skip the ones after it, and is reported by name", async () => {
    const stack = new StopStack();
    const stopped: string[] = [];
    stack.add("storage", null, () => void stopped.push("storage"));
    stack.add("workers", null, async () => {
      throw new Error("worker stuck");
    });
    stack.add("listeners", null, () => void stopped.push("listeners"));
    const failures = await stack.stop();
    expect(stopped).toEqual(["listeners", "storage"]);
    expect(failures.map((f) => [f.name, (f.error as Error).message])).toEqual([["workers", "worker stuck"]]);
  });

  test("a start-up that fails half-way undoes exactly what it had acquired, not the service whose start failed", async () => {
    const stack = new StopStack();
    const log: string[] = [];
    const service = (name: string, fails = false) => ({
      name,
      start: async () => {
        if (fails) throw new Error(`${name} cannot start`);
        log.push(`start ${name}`);
      },
      stop: async () => void log.push(`stop ${name}`),
    });
    const startUp = async () => {
      stack.add("lock", null, () => void log.push("stop lock"));
      await stack.start(service("relay"));
      await stack.start(service("listeners", true));
      await stack.start(service("maintenance"));
    };
    await expect(startUp()).rejects.toThrow("listeners cannot start");
    await stack.stop();
    expect(log).toEqual(["start relay", "stop relay", "stop lock"]);
  });

  test("nothing can be acquired once the stop has begun", async () => {
    const stack = new StopStack();
    void stack.stop();
    expect(() => stack.add("late", null, () => {})).toThrow("late acquired after the stop began");
  });
});
