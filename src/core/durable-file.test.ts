import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileDurably } from "./durable-file.ts";

const dir = mkdtempSync(join(tmpdir(), "agentowl-durable-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a file written durably is there whole, with its mode, and leaves no temp file", () => {
  const path = join(dir, "master.key");
  writeFileDurably(path, "abc\n", { mode: 0o600 });
  expect(readFileSync(path, "utf8")).toBe("abc\n");
  expect(statSync(path).mode & 0o777).toBe(0o600);
  writeFileDurably(path, "def\n", { mode: 0o600 });
  expect(readFileSync(path, "utf8")).toBe("def\n");
  expect(readdirSync(dir)).toEqual(["master.key"]);
});

test("exclusive: an existing file is never replaced (a second init keeps the master key), and no temp file is left", () => {
  const path = join(dir, "once.key");
  writeFileDurably(path, "first\n", { mode: 0o600, exclusive: true });
  expect(() => writeFileDurably(path, "second\n", { mode: 0o600, exclusive: true })).toThrow(/EEXIST/);
  expect(readFileSync(path, "utf8")).toBe("first\n");
  expect(readdirSync(dir).filter((f) => f.includes("tmp"))).toEqual([]);
});
