import { expect, test } from "bun:test";
import { detectIsolationAsync, probe, probeAsync } from "./isolation.ts";

test("the isolation probe start-up runs beside its other steps gives the synchronous probe's answer", async () => {
  const answer = await probeAsync();
  expect(answer).toEqual(probe());
  expect(["bwrap", "sandbox-exec", "process"]).toContain(answer.isolation);
  // Cached: asked twice, the same answer from one probe.
  const first = await detectIsolationAsync();
  expect(await detectIsolationAsync()).toBe(first);
  expect(first).toEqual(answer);
});
