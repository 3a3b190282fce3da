/**
 * The launchd plist (README.md#operations) run as launchd would run it, on any OS: its ProgramArguments go
 * through /bin/sh with a stand-in for agentowl, so the exit-78 rule and the signal hand-over are
 * tested for real; its KeepAlive keys are read from the file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const PLIST = readFileSync(resolve(import.meta.dir, "../../launchd/dev.agentowl.agentowl.plist"), "utf8");
const unxml = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");
/** The XML after `<key>name</key>`, up to the next sibling key at the top level. */
const valueOf = (name: string) =>
  new RegExp(
    `<key>${name}</key>\\s*(<array>[\\s\\S]*?</array>|<dict>[\\s\\S]*?</dict>|<[^>]+/>|<string>[\\s\\S]*?</string>|<integer>\\d+</integer>)`,
  ).exec(PLIST)?.[1] ?? "";
const argv = [...valueOf("ProgramArguments").matchAll(/<string>([\s\S]*?)<\/string>/g)].map((m) => unxml(m[1]!));
const dir = mkdtempSync(join(tmpdir(), "agentowl-launchd-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run the plist's command with `agentowl` replaced by a shell script. */
function runWith(fake: string) {
  const bin = join(dir, `agentowl-${Math.random().toString(36).slice(2)}`);
  writeFileSync(bin, `#!/bin/sh\n${fake}\n`);
  chmodSync(bin, 0o755);
  expect(argv.at(-1)).toBe("/usr/local/bin/agentowl");
  return Bun.spawn([...argv.slice(0, -1), bin], { stdout: "pipe", stderr: "pipe" });
}

describe("the launchd plist", () => {
  test("KeepAlive restarts after a failure or a crash, not after exit 0", () => {
    const keepAlive = valueOf("KeepAlive");
    expect(keepAlive).toMatch(/<key>SuccessfulExit<\/key>\s*<false\/>/);
    expect(keepAlive).toMatch(/<key>Crashed<\/key>\s*<true\/>/);
  });

  test("logs go to /Library/Logs, which exists on every Mac", () => {
    expect(valueOf("StandardOutPath")).toBe("<string>/Library/Logs/agentowl.log</string>");
    expect(valueOf("StandardErrorPath")).toBe("<string>/Library/Logs/agentowl.log</string>");
  });

  test("exit 78 (invalid settings) becomes 0, so launchd does not restart it", async () => {
    const p = runWith('[ "$1" = serve ] || exit 9; echo "bad setting" >&2; exit 78');
    expect(await p.exited).toBe(0);
    expect(await new Response(p.stderr).text()).toContain("not restarting");
  });

  test("any other failure keeps its exit code, so launchd restarts it", async () => {
    expect(await runWith("exit 1").exited).toBe(1);
    expect(await runWith("exit 70").exited).toBe(70);
  });

  test("SIGTERM reaches agentowl, and the wrapper waits for its drain and exits with its code", async () => {
    const marker = join(dir, "drained");
    const p = runWith(
      `trap 'sleep 0.3; echo drained > "${marker}"; exit 0' TERM; echo up; while :; do sleep 0.05; done`,
    );
    const reader = p.stdout.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("up");
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    expect(readFileSync(marker, "utf8").trim()).toBe("drained");
  });
});
