import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MAX_YAML_ALIASES, MAX_YAML_DEPTH, yamlBoundsProblem } from "./bounds.ts";
import { parseDesired } from "./parse.ts";

const indented = (n: number) =>
  Array.from({ length: n }, (_, i) => `${" ".repeat(i)}a${i}:`).join("\n") + `\n${" ".repeat(n)}b: 1\n`;
/** "billion laughs": each level ten aliases of the one before. */
const laughs = (levels: number) =>
  ["apiVersion: agentowl/v1", "tenants: []", `l0: &l0 [${Array(10).fill('"lol"').join(", ")}]`]
    .concat(Array.from({ length: levels }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(10).fill(`*l${i}`).join(", ")}]`))
    .join("\n");

describe("nesting and aliases are counted before the yaml library runs", () => {
  test("5,000 compact sequence entries on one line (10 KiB) are refused at once, at their line", () => {
    const t0 = performance.now();
    const p = yamlBoundsProblem(`apiVersion: agentowl/v1\ntenants:\n${"- ".repeat(5000)}x\n`);
    expect(p).toMatchObject({ line: 3, message: expect.stringContaining(`more than ${MAX_YAML_DEPTH} levels`) });
    // A bound far above the few milliseconds it takes: a loaded CI machine must not fail it.
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("flow brackets 5,000 deep, block indentation 100 deep, and a mix of the three are refused", () => {
    expect(yamlBoundsProblem(`a: ${"[".repeat(5000)}${"]".repeat(5000)}\n`)?.line).toBe(1);
    expect(yamlBoundsProblem(indented(100))?.line).toBe(MAX_YAML_DEPTH + 1);
    const mixed = `${indented(30)}${" ".repeat(30)}x:\n${" ".repeat(31)}${"- ".repeat(20)}${"{a: ".repeat(20)}1${"}".repeat(20)}\n`;
    expect(yamlBoundsProblem(mixed)?.line).toBe(33);
  });

  test("what only looks deep is not counted: brackets in quotes, comments and block scalars", () => {
    const text = [
      `a: "${"[".repeat(500)}"`,
      `b: '${"{".repeat(500)} it''s'`,
      `c: 1 # ${"[".repeat(500)}`,
      "d: |",
      ...Array.from({ length: 200 }, (_, i) => `${" ".repeat(2 + i)}[[[[ - - - {`),
      "e: 2",
    ].join("\n");
    expect(yamlBoundsProblem(text)).toBeNull();
    expect(yamlBoundsProblem(indented(MAX_YAML_DEPTH - 2))).toBeNull();
  });

  test("more than the allowed aliases are refused", () => {
    expect(yamlBoundsProblem(laughs(11))).toMatchObject({
      line: 14,
      message: expect.stringContaining(`more than ${MAX_YAML_ALIASES} aliases`),
    });
    expect(yamlBoundsProblem(laughs(2))).toBeNull();
  });

  test("the shipped example file is within every bound", () => {
    const example = readFileSync(join(import.meta.dir, "..", "..", "..", "examples", "agentowl.yaml"), "utf8");
    expect(yamlBoundsProblem(example)).toBeNull();
  });
});

describe("parseDesired refuses a hostile file quickly, as a located problem", () => {
  test("a 10 KiB file nested 5,000 deep is a problem at its line in milliseconds, not seconds", () => {
    const t0 = performance.now();
    const r = parseDesired(`apiVersion: agentowl/v1\ntenants:\n${"- ".repeat(5000)}x\n`, "deep.yaml");
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r).toEqual({ errors: [expect.objectContaining({ file: "deep.yaml", line: 3 })] });
  });

  test("billion laughs within the alias count still cannot expand", () => {
    const t0 = performance.now();
    const r = parseDesired(laughs(8), "laughs.yaml");
    expect(performance.now() - t0).toBeLessThan(500);
    expect("errors" in r && r.errors[0]!.message).toContain("aliases expand too much");
  });
});
