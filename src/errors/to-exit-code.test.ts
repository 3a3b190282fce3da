import { describe, expect, test } from "bun:test";
import { AppError } from "./app-error.ts";
import { EXIT, toExitCode } from "./to-exit-code.ts";

describe("toExitCode: the CLI's edge of the error model", () => {
  test("each kind a command can fail with has its documented exit code", () => {
    expect(toExitCode(new AppError("config_invalid", "x"))).toBe(EXIT.config);
    expect(toExitCode(new AppError("invalid_input", "x"))).toBe(EXIT.usage);
    expect(toExitCode(new AppError("not_found", "x"))).toBe(EXIT.notFound);
    expect(toExitCode(new AppError("conflict", "x"))).toBe(EXIT.conflict);
    expect(toExitCode(new AppError("precondition_failed", "x"))).toBe(EXIT.conflict);
    expect(toExitCode(new AppError("unauthenticated", "x"))).toBe(EXIT.auth);
    expect(toExitCode(new AppError("forbidden", "x"))).toBe(EXIT.auth);
  });

  test("anything else, our failures and foreign errors alike, is 1", () => {
    expect(toExitCode(new AppError("storage_full", "x"))).toBe(EXIT.failed);
    expect(toExitCode(new AppError("internal", "x"))).toBe(EXIT.failed);
    expect(toExitCode(new Error("boom"))).toBe(EXIT.failed);
    expect(toExitCode("a string")).toBe(EXIT.failed);
  });
});
