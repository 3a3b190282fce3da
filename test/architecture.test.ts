/**
 * Dependencies point one way (docs/architecture.md): checked here, on the imports of every module
 * under src/, so that a change that turns an arrow around fails with the offending import named.
 *
 *   1. store imports no domain or adapter module (only core, errors, config; types excepted):
 *      a second storage driver must be a new folder, not a rewrite of callers' modules;
 *   2. no cycle between top-level folders;
 *   3. a folder with an index.ts is imported through it, never past it;
 *   4. core is a leaf: clock, ids, logs, metrics and the like import no other folder but errors;
 *   5. the README's source layout names every folder under src/.
 *
 * KNOWN lists the imports that still break rule 3, each with why it is left; the list may only
 * shrink (a new one fails, and so does an entry that no longer occurs).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "..", "src");
const STORE_MAY_IMPORT = new Set(["store", "core", "errors", "config"]);

/** Imports past an index that stay for now (the storage contract's issue), each with its reason. */
const KNOWN = new Map<string, string>([
  [
    "cli/events.ts -> store/schema/events.ts",
    "the CLI takes the delivery states from the schema without loading the store",
  ],
  [
    "cli/approvals.ts -> store/schema/approvals.ts",
    "the CLI takes the approval states from the schema without loading the store",
  ],
]);

interface Import {
  from: string;
  to: string;
  typeOnly: boolean;
}

function modules(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return modules(p);
    return p.endsWith(".ts") && !p.endsWith(".test.ts") && !p.endsWith(".d.ts") ? [p] : [];
  });
}

const imports: Import[] = modules(SRC).flatMap((file) =>
  [...readFileSync(file, "utf8").matchAll(/^(?:import|export)\s+(type\s+)?(?:[^;]*?\s+from\s+)?"(\.{1,2}\/[^"]+)"/gm)]
    .map((m) => ({
      from: relative(SRC, file),
      to: relative(SRC, resolve(dirname(file), m[2]!)),
      typeOnly: m[1] !== undefined,
    }))
    // The embedded migrations are data, not modules.
    .filter((i) => !i.to.startsWith("..")),
);

const folderOf = (path: string) => (path.includes("/") ? path.split("/")[0]! : path.replace(/\.ts$/, ""));

describe("dependencies point one way", () => {
  test(`the module graph was read (${imports.length} imports)`, () => {
    expect(imports.length).toBeGreaterThan(300);
  });

  test("store imports no domain or adapter module", () => {
    const bad = imports
      .filter((i) => folderOf(i.from) === "store" && !i.typeOnly && !STORE_MAY_IMPORT.has(folderOf(i.to)))
      .map((i) => `${i.from} -> ${i.to}`);
    expect(bad).toEqual([]);
  });

  test("core is a leaf: it imports nothing but errors (types included)", () => {
    const offending = imports
      .filter((i) => folderOf(i.from) === "core" && !["core", "errors"].includes(folderOf(i.to)))
      .map((i) => `${i.from} -> ${i.to}`);
    expect(offending).toEqual([]);
  });

  test("no cycle between top-level folders", () => {
    const edges = new Map<string, Set<string>>();
    const via = new Map<string, string>();
    for (const i of imports) {
      const [a, b] = [folderOf(i.from), folderOf(i.to)];
      if (a === b || i.typeOnly) continue;
      if (!edges.has(a)) edges.set(a, new Set());
      edges.get(a)!.add(b);
      via.set(`${a}>${b}`, `${i.from} -> ${i.to}`);
    }
    const cycles: string[] = [];
    const visit = (node: string, path: string[]) => {
      for (const next of edges.get(node) ?? []) {
        const at = path.indexOf(next);
        if (at >= 0) {
          const ring = [...path.slice(at), next];
          cycles.push(
            ring
              .slice(1)
              .map((b, k) => via.get(`${ring[k]}>${b}`))
              .join(", then "),
          );
        } else visit(next, [...path, next]);
      }
    };
    for (const start of edges.keys()) visit(start, [start]);
    expect([...new Set(cycles)]).toEqual([]);
  });

  test("a folder with an index.ts is imported through it (the known exceptions only shrink)", () => {
    // Any folder, nested ones too (ingress/smtp, control/desired): an import from outside it
    // names its index.ts, never a file past it.
    const past = imports
      .filter((i) => {
        const parts = i.to.split("/");
        for (let n = 1; n < parts.length; n++) {
          const dir = parts.slice(0, n).join("/");
          if (i.from.startsWith(`${dir}/`)) continue;
          if (existsSync(join(SRC, dir, "index.ts")) && i.to !== `${dir}/index.ts`) return true;
        }
        return false;
      })
      .map((i) => `${i.from} -> ${i.to}`);
    expect(past.filter((p) => !KNOWN.has(p))).toEqual([]);
    expect([...KNOWN.keys()].filter((k) => !past.includes(k))).toEqual([]);
  });

  test("the README's source layout names every folder under src/ with its purpose, and no other", () => {
    const readme = readFileSync(resolve(SRC, "..", "README.md"), "utf8");
    const tree = /```\nsrc\/\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
    const listed = [...tree.matchAll(/^ {2}([a-z-]+)\/\s+\S.*$/gm)].map((m) => m[1]!).sort();
    const folders = readdirSync(SRC)
      .filter((f) => statSync(join(SRC, f)).isDirectory())
      .sort();
    expect(listed).toEqual(folders);
  });
});
