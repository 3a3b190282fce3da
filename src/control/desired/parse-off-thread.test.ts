import { afterAll, describe, expect, test } from "bun:test";
import { longestStall } from "../../../test/helpers/stall.ts";
import { isAppError } from "../../errors/index.ts";
import { DesiredParser } from "./parse-off-thread.ts";

/** Within every bound the pre-count checks, yet slow for the yaml library: 20,000 keys in one mapping (its duplicate-key check is quadratic). */
const slow = `apiVersion: agentowl/v1\ntenants: []\nx:\n${Array.from({ length: 20_000 }, (_, i) => `  k${i}: 1`).join("\n")}\n`;
const good = "apiVersion: agentowl/v1\ntenants:\n  - name: beta\n";

const parser = new DesiredParser(1000);
afterAll(() => parser.close());

describe("desired-state files are parsed in a worker thread, within a time limit", () => {
  test("a file parses there as it does in-process", async () => {
    expect(await parser.parse(good, "f.yaml")).toEqual({
      state: {
        tenants: [{ tenant: { name: "beta" }, endpoints: [], bindings: [], routes: [], policies: [], templates: [] }],
      },
      refs: [],
    });
  });

  test("a file that takes too long is a 422 at the limit, the event loop free meanwhile, and the next file gets a fresh worker", async () => {
    const t0 = performance.now();
    const {
      value: error,
      stallMs: worst,
      ticks,
    } = await longestStall(() => parser.parse(slow, "slow.yaml").catch((e) => e), 10);
    const took = performance.now() - t0;
    expect(isAppError(error) && error.kind).toBe("invalid_input");
    expect(error.errors[0]).toMatchObject({
      field: "slow.yaml:1:1",
      message: expect.stringContaining("longer than 1000 ms"),
    });
    expect(took).toBeGreaterThanOrEqual(990);
    expect(took).toBeLessThan(4000);
    // The timer kept firing while the worker was busy: no stall on this thread.
    expect(ticks).toBeGreaterThan(5);
    expect(worst).toBeLessThan(250);
    expect(await parser.parse(good, "f.yaml")).toHaveProperty("state");
  });
});
