/**
 * The packaging files as the tools that read them see them: shellcheck on install.sh (POSIX sh)
 * and build.sh, `systemd-analyze verify` on the unit (the repo's and the one install.sh renders),
 * the launchd plist parsed by plistlib (or plutil). Where a tool is missing the test says so.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const work = mkdtempSync(join(tmpdir(), "agentowl-service-files-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const has = (cmd: string) => Bun.spawnSync(["sh", "-c", `command -v ${cmd}`]).exitCode === 0;
function run(argv: string[]): { code: number; out: string } {
  const p = Bun.spawnSync(argv, { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
}

test("install.sh is POSIX sh and shellcheck-clean; build.sh is shellcheck-clean", () => {
  if (!has("shellcheck")) return void console.warn("skipped: shellcheck is not installed (apt-get install shellcheck)");
  expect(readFileSync(join(REPO, "install.sh"), "utf8").split("\n")[0]).toBe("#!/bin/sh");
  const sh = run(["shellcheck", "-s", "sh", "install.sh"]);
  expect(sh.code, sh.out).toBe(0);
  const bash = run(["shellcheck", "scripts/build.sh"]);
  expect(bash.code, bash.out).toBe(0);
});

test("the systemd unit passes systemd-analyze verify, as shipped and as install.sh renders it", () => {
  if (!has("systemd-analyze"))
    return void console.warn("skipped: systemd-analyze is not installed (apt-get install systemd)");
  const exe = join(work, "agentowl");
  writeFileSync(exe, "#!/bin/sh\n");
  chmodSync(exe, 0o755);
  // verify checks that ExecStart= exists: the shipped unit with its binary path pointed at a file.
  const shipped = join(work, "agentowl.service");
  writeFileSync(
    shipped,
    readFileSync(join(REPO, "systemd/agentowl.service"), "utf8").replace("/usr/local/bin/agentowl", exe),
  );
  const a = run(["systemd-analyze", "verify", shipped]);
  expect(a.code, a.out).toBe(0);
  expect(a.out).toBe("");

  const root = join(work, "root");
  // A stand-in binary that answers every command with exit 0: install.sh renders and installs the unit.
  const me = Bun.spawnSync(["id", "-un"]).stdout.toString().trim();
  const installed = run(["sh", "install.sh", "--prefix", root, "--binary", exe, "--user", me, "--init-system", "none"]);
  expect(installed.code, installed.out).toBe(0);
  const rendered = run(["systemd-analyze", "verify", join(root, "etc/systemd/system/agentowl.service")]);
  expect(rendered.code, rendered.out).toBe(0);
  expect(rendered.out).toBe("");
});

test("the unit holds what the service needs: notify, watchdog, restart rules, sandbox, credential", () => {
  const unit = readFileSync(join(REPO, "systemd/agentowl.service"), "utf8");
  const value = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].map((m) => m[1]);
  expect(value("Type")).toEqual(["notify"]);
  expect(Number(value("WatchdogSec")[0])).toBeGreaterThan(0);
  expect(value("Restart")).toEqual(["always"]);
  expect(value("RestartPreventExitStatus")).toEqual(["78"]);
  expect(value("AmbientCapabilities")).toEqual(["CAP_NET_BIND_SERVICE"]);
  expect(value("NoNewPrivileges")).toEqual(["yes"]);
  expect(value("ProtectSystem")).toEqual(["strict"]);
  expect(value("ProtectHome")).toEqual(["yes"]);
  expect(value("PrivateTmp")).toEqual(["yes"]);
  expect(value("ReadWritePaths")).toEqual(["/var/lib/agentowl"]);
  expect(value("LoadCredential")).toEqual(["agentowl-master-key:/etc/agentowl/credentials/agentowl-master-key"]);
  // Longer than the default drain (shutdown_timeout, 10 s).
  expect(Number(value("TimeoutStopSec")[0])).toBeGreaterThan(10);
});

test("the launchd plist parses, with RunAtLoad, KeepAlive and its log paths", () => {
  const plist = join(REPO, "launchd/dev.agentowl.agentowl.plist");
  if (has("plutil")) {
    const lint = run(["plutil", "-lint", plist]);
    expect(lint.code, lint.out).toBe(0);
  }
  if (!has("python3")) return void console.warn("skipped: python3 is not installed (plistlib reads the plist)");
  const r = run([
    "python3",
    "-c",
    "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
    plist,
  ]);
  expect(r.code, r.out).toBe(0);
  const p = JSON.parse(r.out);
  expect(p.Label).toBe("dev.agentowl.agentowl");
  expect(p.RunAtLoad).toBe(true);
  expect(p.KeepAlive).toEqual({ SuccessfulExit: false, Crashed: true });
  expect(p.StandardOutPath).toBe("/Library/Logs/agentowl.log");
  expect(p.StandardErrorPath).toBe("/Library/Logs/agentowl.log");
  expect(p.ProgramArguments.at(-1)).toBe("/usr/local/bin/agentowl");
});
