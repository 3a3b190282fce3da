import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { KindGuard, type TSchema } from "@sinclair/typebox";
import { KINDS, TenantSpec } from "../resources/specs.ts";
import { fieldRows, MEANING, updateFieldTables } from "./reference.ts";

const doc = readFileSync(new URL("../../../docs/desired-state.md", import.meta.url), "utf8");

describe("docs/desired-state.md", () => {
  test("its field tables are the ones the schemas generate", () => {
    expect(
      updateFieldTables(doc),
      "docs/desired-state.md is out of date: run `bun src/control/desired/reference.ts --write`",
    ).toBe(doc);
  });

  test("it has a table for every kind", () => {
    for (const table of ["file", "tenant", ...Object.keys(KINDS), "condition"])
      expect(doc).toContain(`<!-- fields:${table} -->`);
  });

  test("every field has a meaning, and every meaning a field", () => {
    const rows = fieldRows();
    expect(rows.filter((r) => !r.meaning).map((r) => `${r.table}.${r.path}`)).toEqual([]);
    expect(Object.keys(MEANING).sort()).toEqual(rows.map((r) => `${r.table}.${r.path}`).sort());
  });

  test("it mentions every property name in specs.ts", () => {
    const names = new Set<string>();
    const walk = (s: TSchema): void => {
      for (const [name, child] of Object.entries((s.properties ?? {}) as Record<string, TSchema>)) {
        names.add(name);
        walk(child);
      }
      for (const child of [
        ...Object.values(s.patternProperties ?? {}),
        ...(s.anyOf ?? []),
        ...(KindGuard.IsArray(s) ? [s.items] : []),
      ])
        walk(child as TSchema);
    };
    for (const schema of [TenantSpec, ...Object.values(KINDS)]) walk(schema);
    expect([...names].filter((n) => !new RegExp(`\`([a-z_\\[\\]]+\\.)*${n}\``).test(doc))).toEqual([]);
  });
});
