/**
 * The README's first command, `npm ci`, is quiet on the Node.js the README names (20 or later):
 * a dry run of the same lock file and .npmrc in a temp dir prints no warning.
 */
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "agentowl-npm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const npm = Bun.which("npm");
/** Our environment without the npm_config_* that `npm test` sets for its child: the .npmrc must do it alone. */
const cleanEnv = () =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k))) as Record<string, string>;

test.if(npm !== null)("npm ci prints no warning (no EBADENGINE, no unreviewed install scripts)", async () => {
  for (const f of ["package.json", "package-lock.json", ".npmrc"]) copyFileSync(join(ROOT, f), join(dir, f));
  const p = Bun.spawn([npm!, "ci", "--dry-run", "--ignore-scripts"], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: cleanEnv(),
  });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  const nodeMajor = Number(/^v(\d+)/.exec(Bun.spawnSync(["node", "--version"]).stdout.toString())?.[1]);
  expect(nodeMajor).toBeGreaterThanOrEqual(20);
  expect(code, err).toBe(0);
  expect(err).not.toMatch(/warn/i);
});
