import { expect, test } from "bun:test";
import { createLogger, Redactor } from "../core/log.ts";
import { stepTimer } from "./steps.ts";

test("each start-up step is one debug line with its milliseconds and the milliseconds since the exec; none above debug", () => {
  const lines: Record<string, unknown>[] = [];
  const log = (level: "debug" | "info") =>
    createLogger({ level, redactor: new Redactor(), sink: (line) => lines.push(JSON.parse(line)) });
  const step = stepTimer(log("debug"), performance.now() - 5);
  step("storage");
  step("vault");
  expect(lines.map((l) => [l.level, l.msg, l.step])).toEqual([
    ["debug", "start-up step", "storage"],
    ["debug", "start-up step", "vault"],
  ]);
  expect(lines[0]!.ms as number).toBeGreaterThanOrEqual(5);
  expect(lines[1]!.since_exec_ms as number).toBeGreaterThanOrEqual(lines[0]!.since_exec_ms as number);
  lines.length = 0;
  stepTimer(log("info"))("storage");
  expect(lines).toEqual([]);
});
