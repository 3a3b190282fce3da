/**
 * Prints the settings table of docs/configuration.md, generated from src/config/schema.ts.
 * With --write, also puts it in place of the table in docs/configuration.md.
 * src/config/load.test.ts fails when the two disagree.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderConfigDocs } from "../src/config/index.ts";

const DOC = join(import.meta.dir, "..", "docs", "configuration.md");

/** `doc` with its table (the run of lines that start with `|`) replaced by `table`. */
export function replaceTable(doc: string, table: string): string {
  const lines = doc.split("\n");
  const first = lines.findIndex((l) => l.startsWith("|"));
  if (first < 0) throw new Error("docs/configuration.md has no table to replace");
  let end = first;
  while (end < lines.length && lines[end]!.startsWith("|")) end++;
  return [...lines.slice(0, first), table.trimEnd(), ...lines.slice(end)].join("\n");
}

if (import.meta.main) {
  const table = renderConfigDocs();
  process.stdout.write(table);
  if (process.argv.includes("--write")) writeFileSync(DOC, replaceTable(readFileSync(DOC, "utf8"), table));
}
