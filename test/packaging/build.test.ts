/**
 * scripts/build.sh's release for this machine's target, built once for the file: the tarball
 * holds the binary, install.sh, the unit, the plist and INSTALL; SHA256SUMS verifies; the binary
 * says its version, commit and target, and tells a service manager READY=1 once /readyz answers
 * 200 and WATCHDOG=1 after it (sd_notify through bun:ffi, inside the compiled binary).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type NotifySocket, notifySocket } from "../helpers/notify-socket.ts";

const REPO = resolve(import.meta.dir, "../..");
const VERSION = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version as string;
const target = `${process.platform === "darwin" ? "darwin" : "linux"}-${process.arch}`;
const out = mkdtempSync(join(tmpdir(), "agentowl-release-"));
let build: { code: number; log: string };
afterAll(() => rmSync(out, { recursive: true, force: true }));

beforeAll(() => {
  const p = Bun.spawnSync(["bash", "scripts/build.sh", "--target", target, "--out", out], {
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
  });
  build = { code: p.exitCode ?? -1, log: p.stdout.toString() + p.stderr.toString() };
}, 300_000);

const tarball = `agentowl-${VERSION}-${target}.tar.gz`;

test("the release holds the binary, its tarball and SHA256SUMS, which verifies", () => {
  expect(build.code, build.log).toBe(0);
  expect(readdirSync(out).sort()).toEqual([tarball, `agentowl-${target}`, "SHA256SUMS"].sort());
  const sums = readFileSync(join(out, "SHA256SUMS"), "utf8");
  expect(sums).toMatch(new RegExp(`^[0-9a-f]{64}  agentowl-${target}$`, "m"));
  expect(sums).toMatch(new RegExp(`^[0-9a-f]{64}  ${tarball.replace(/\./g, "\\.")}$`, "m"));
  const check = Bun.spawnSync(["sha256sum", "-c", "SHA256SUMS"], { cwd: out });
  expect(check.exitCode, check.stdout.toString() + check.stderr.toString()).toBe(0);
});

test("the tarball holds the binary, install.sh, the systemd unit, the launchd plist and INSTALL", () => {
  const dir = `agentowl-${VERSION}-${target}`;
  const list = Bun.spawnSync(["tar", "tzvf", join(out, tarball)])
    .stdout.toString()
    .trim()
    .split("\n");
  const entries = list.map((l) => l.split(/\s+/).at(-1)).sort();
  expect(entries).toEqual(
    [
      `${dir}/`,
      `${dir}/INSTALL`,
      `${dir}/agentowl`,
      `${dir}/install.sh`,
      `${dir}/launchd/`,
      `${dir}/launchd/dev.agentowl.agentowl.plist`,
      `${dir}/systemd/`,
      `${dir}/systemd/agentowl.service`,
    ].sort(),
  );
  expect(list.find((l) => l.endsWith("/install.sh"))).toMatch(/^-rwxr-xr-x 0\/0 /);
  const unpacked = join(out, "unpacked");
  mkdirSync(unpacked);
  expect(Bun.spawnSync(["tar", "xzf", join(out, tarball), "-C", unpacked]).exitCode).toBe(0);
  expect(readFileSync(join(unpacked, dir, "install.sh"), "utf8")).toBe(readFileSync(join(REPO, "install.sh"), "utf8"));
  expect(readFileSync(join(unpacked, dir, "INSTALL"), "utf8")).toContain("sudo ./install.sh");
  expect(Bun.spawnSync(["cmp", join(unpacked, dir, "agentowl"), join(out, `agentowl-${target}`)]).exitCode).toBe(0);
  rmSync(unpacked, { recursive: true });
});

test("agentowl version --json names the version, the commit, the target and the Bun inside", () => {
  const p = Bun.spawnSync([join(out, `agentowl-${target}`), "version", "--json"]);
  expect(p.exitCode, p.stderr.toString()).toBe(0);
  const info = JSON.parse(p.stdout.toString());
  const head = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: REPO }).stdout.toString().trim();
  expect(info).toMatchObject({ version: VERSION, target, bun: Bun.version });
  expect(info.commit).toMatch(new RegExp(`^${head}(-dirty)?$`));
});

let socket: NotifySocket | null = null;
afterAll(() => socket?.close());

test("under a service manager the binary sends READY=1 once /readyz answers 200, then WATCHDOG=1", async () => {
  socket = await notifySocket();
  const data = join(out, "data");
  const proc = Bun.spawn([join(out, `agentowl-${target}`), "serve"], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      AGENTOWL_DATA_DIR: data,
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_DNS_SERVERS: "127.0.0.1:9",
      AGENTOWL_DNS_TIMEOUT: "200ms",
      NOTIFY_SOCKET: socket.path,
      WATCHDOG_USEC: "1000000",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    await socket.waitFor("READY=1", 20_000);
    const log = await readUntil(proc.stdout, '"msg":"agentowl serving"');
    const url = /"http":"([^"]+)"/.exec(log)![1]!;
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    await socket.waitFor("WATCHDOG=1", 5_000);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    await socket.waitFor("STOPPING=1", 5_000);
  } finally {
    proc.kill("SIGKILL");
  }
}, 60_000);

async function readUntil(stream: ReadableStream<Uint8Array>, marker: string): Promise<string> {
  let text = "";
  const reader = stream.getReader();
  while (!text.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return text;
}
