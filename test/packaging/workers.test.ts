/**
 * Every worker thread the appliance starts must be an entry point of the compiled binary: in it,
 * a module's own path is the entry point's, so a worker is found only under the path
 * scripts/build.sh embeds it at (src/core/worker-path.ts). A worker missing from the build
 * works from source and hangs or fails in the binary only (the PostgreSQL bridge's did).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Glob } from "bun";

const ROOT = join(import.meta.dir, "..", "..");
const build = readFileSync(join(ROOT, "scripts", "build.sh"), "utf8");

/** The source files that start a worker, each with the path it names for the compiled binary. */
function workerStarters(): { file: string; embedded: string | null }[] {
  const out: { file: string; embedded: string | null }[] = [];
  for (const file of new Glob("src/**/*.ts").scanSync(ROOT)) {
    if (file.endsWith(".test.ts")) continue;
    const text = readFileSync(join(ROOT, file), "utf8");
    if (!/new (Worker|WorkerQueue)\(/.test(text) || file === "src/core/worker-queue.ts") continue;
    const m = /workerPath\("([^"]+\.ts)"\)/.exec(text);
    out.push({ file, embedded: m ? `src/${m[1]}` : null });
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}

test("every worker the appliance starts names the path the binary embeds it at, and scripts/build.sh embeds it", () => {
  const starters = workerStarters();
  expect(starters.map((s) => s.file)).toContain("src/store/postgres/bridge.ts");
  for (const s of starters) {
    expect({ file: s.file, embedded: s.embedded }).toEqual({ file: s.file, embedded: expect.any(String) });
    expect({ file: s.file, inBuild: build.includes(` ${s.embedded}`) }).toEqual({ file: s.file, inBuild: true });
  }
});
