import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RuntimeLimits } from "../types.ts";
import { bwrapArgs, type PathKind } from "./bwrap.ts";
import { ADDRESS_SPACE_HEADROOM, cgroupParent, createCgroup, prlimitArgs } from "./limits.ts";
import { LineSplitter, MAX_LINE_BYTES, Ring } from "./output.ts";
import { sandboxExecProfile, sbplString } from "./sandbox-exec.ts";

const LIMITS: RuntimeLimits = { memoryBytes: 256 * 1024 * 1024, cpu: 0.5, openFiles: 256, processes: 64 };

describe("bwrap arguments", () => {
  const merged = (p: string): PathKind =>
    p === "/usr" ? { dir: true } : ["/bin", "/lib", "/lib64", "/sbin"].includes(p) ? { symlink: `usr${p}` } : null;
  const args = bwrapArgs({
    dir: "/data/agents/rt/rt_1",
    socket: "/data/agents/run/rt_1.sock",
    readOnly: [["/opt/bun", "/opt/agentowl/bin/bun"]],
    kind: merged,
  });
  const pairs = (flag: string) => args.flatMap((a, i) => (a === flag ? [args.slice(i + 1, i + 3).join(" ")] : []));

  test("every namespace is new, the sandbox dies with the appliance, in a session of its own, without capabilities", () => {
    expect(args.slice(0, 5)).toEqual(["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
  });

  test("the system is read-only (symlinks of a merged /usr kept as symlinks), /etc only in part, no data dir", () => {
    expect(pairs("--ro-bind")).toEqual(["/usr /usr", "/opt/bun /opt/agentowl/bin/bun"]);
    expect(pairs("--symlink")).toEqual(["usr/bin /bin", "usr/sbin /sbin", "usr/lib /lib", "usr/lib64 /lib64"]);
    expect(pairs("--ro-bind-try").every((p) => p.startsWith("/etc/"))).toBe(true);
    expect(pairs("--ro-bind-try")).not.toContain("/etc/shadow /etc/shadow");
    expect(args.filter((a) => a.startsWith("/data")).sort()).toEqual([
      "/data/agents/rt/rt_1",
      "/data/agents/run/rt_1.sock",
    ]);
  });

  test("its directory is /work, its socket /run/agentowl.sock, /tmp private, the root read-only", () => {
    expect(pairs("--bind")).toEqual(["/data/agents/rt/rt_1 /work", "/data/agents/run/rt_1.sock /run/agentowl.sock"]);
    expect(pairs("--tmpfs")[0]).toMatch(/^\/tmp/);
    expect(args.slice(-4)).toEqual(["--remount-ro", "/", "--chdir", "/work"]);
    expect(args).not.toContain("--share-net");
  });
});

describe("the sandbox-exec profile", () => {
  const profile = sandboxExecProfile({
    dir: "/Users/a/data/agents/rt/rt_1",
    socket: "/Users/a/data/agents/run/rt_1.sock",
    dataDir: "/Users/a/data",
  });

  test("denies the network but its own socket, writes but its directory and the temporary ones, reads of the data dir but its own", () => {
    expect(profile).toBe(`(version 1)
(allow default)
(deny network*)
(allow network-outbound (remote unix-socket (path-literal "/Users/a/data/agents/run/rt_1.sock")))
(deny file-write*)
(allow file-write* (subpath "/Users/a/data/agents/rt/rt_1") (subpath "/private/tmp") (subpath "/private/var/folders") (literal "/dev/null"))
(deny file-read* (subpath "/Users/a/data"))
(allow file-read* (subpath "/Users/a/data/agents/rt/rt_1") (literal "/Users/a/data/agents/run/rt_1.sock"))
`);
  });

  test("a path with quotes or backslashes cannot end its string literal", () => {
    expect(sbplString('/a"b\\c')).toBe('"/a\\"b\\\\c"');
    expect(sandboxExecProfile({ dir: '/x") (allow network*', socket: "/s", dataDir: "/d" })).toContain(
      '(subpath "/x\\") (allow network*")',
    );
  });
});

describe("limits", () => {
  let root = "";
  afterEach(() => {
    if (root) rmSync(root, { recursive: true, force: true });
    root = "";
  });

  test("prlimit sets open files, processes and address space (memory plus the engine's reservations)", () => {
    expect(prlimitArgs("/usr/bin/prlimit", LIMITS)).toEqual([
      "/usr/bin/prlimit",
      "--nofile=256:256",
      "--nproc=64:64",
      `--as=${LIMITS.memoryBytes + ADDRESS_SPACE_HEADROOM}:${LIMITS.memoryBytes + ADDRESS_SPACE_HEADROOM}`,
      "--",
    ]);
  });

  /** A cgroup v2 tree on disk, as the kernel shows it (files only). */
  function fakeCgroups(rootControllers: string, selfControllers: string | null) {
    root = mkdtempSync(join(tmpdir(), "cg-"));
    writeFileSync(join(root, "cgroup.controllers"), rootControllers);
    writeFileSync(join(root, "cgroup.subtree_control"), "");
    if (selfControllers !== null) {
      mkdirSync(join(root, "system.slice", "agentowl.service"), { recursive: true });
      writeFileSync(join(root, "system.slice", "agentowl.service", "cgroup.controllers"), selfControllers);
      writeFileSync(join(root, "system.slice", "agentowl.service", "cgroup.subtree_control"), "memory pids cpu");
    }
  }

  test("no cgroup v2 (no cgroup.controllers at the mount): none", () => {
    root = mkdtempSync(join(tmpdir(), "cg-"));
    expect(cgroupParent({ root, self: "/" })).toBeNull();
  });

  test("the appliance's own (delegated) cgroup is preferred; else the root, with the controllers enabled for children", () => {
    fakeCgroups("cpuset cpu io memory pids", "cpu memory pids");
    expect(cgroupParent({ root, self: "/system.slice/agentowl.service" })).toBe(
      join(root, "system.slice", "agentowl.service"),
    );
    rmSync(root, { recursive: true, force: true });
    fakeCgroups("cpuset cpu io memory pids", "io");
    expect(cgroupParent({ root, self: "/system.slice/agentowl.service" })).toBe(root);
    expect(readFileSync(join(root, "cgroup.subtree_control"), "utf8")).toBe("+memory +pids +cpu");
  });

  test("a runtime's cgroup carries memory.max, pids.max and cpu.max", () => {
    fakeCgroups("cpu memory pids", null);
    const dir = createCgroup(root, "rt_1", LIMITS);
    expect(dir).toBe(join(root, "agentowl-rt_1"));
    expect(readFileSync(join(dir, "memory.max"), "utf8")).toBe(String(LIMITS.memoryBytes));
    expect(readFileSync(join(dir, "pids.max"), "utf8")).toBe("64");
    expect(readFileSync(join(dir, "cpu.max"), "utf8")).toBe("50000 100000");
  });
});

describe("output lines", () => {
  test("text in any chunks comes out as lines; the last without a newline at flush", () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push("a\nb");
    s.push("c\n\nd");
    s.flush();
    expect(lines).toEqual(["a", "bc", "", "d"]);
  });

  test(`a line longer than ${MAX_LINE_BYTES} bytes is cut there and marked; the next line is whole`, () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push("x".repeat(MAX_LINE_BYTES - 1));
    s.push("é".repeat(10_000));
    s.push("\nnext\n");
    expect(lines).toHaveLength(2);
    expect(Buffer.byteLength(lines[0]!.replace(/ \[…\]$/, ""))).toBeLessThanOrEqual(MAX_LINE_BYTES);
    expect(lines[0]!.endsWith("x […]")).toBe(true);
    expect(lines[1]).toBe("next");
  });

  test("the ring keeps the last 500", () => {
    const r = new Ring<number>();
    for (let i = 0; i < 600; i++) r.push(i);
    expect(r.list()).toHaveLength(500);
    expect(r.list()[0]).toBe(100);
  });
});
