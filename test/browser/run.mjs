/**
 * `npm test`'s browser half: every test/browser/*.test.mjs under Node's test runner (each file starts
 * its own appliance and browser; files run side by side on machines with more than two cores). Without Debian's chromium it says so in one line
 * and passes, as the corpus tests do without their corpus. AGENTOWL_TEST_BINARY selects the
 * compiled binary as the appliance under test.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { CHROMIUM, ROOT, skip } from "./harness.mjs";

if (skip) {
  console.log(`browser tests skipped: ${skip}`);
  process.exit(0);
}
const dir = join(ROOT, "test", "browser");
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".test.mjs"))
  .sort()
  .map((f) => join(dir, f));
console.log(
  `browser tests: ${files.length} files, ${CHROMIUM}, ${process.env.AGENTOWL_TEST_BINARY ?? "bun src/main.ts"}`,
);
const run = spawnSync(process.execPath, ["--test", ...process.argv.slice(2), ...files], {
  stdio: "inherit",
});
process.exit(run.status ?? 1);
