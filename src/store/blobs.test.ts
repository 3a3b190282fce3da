import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlobStore } from "./blobs.ts";

const root = mkdtempSync(join(tmpdir(), "agentowl-blobs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const bytes = (s: string) => new TextEncoder().encode(s);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("blob store", () => {
  test("a blob comes back byte for byte, named by its SHA-256 under sha256/<2 hex>/<64 hex>", async () => {
    const dir = join(root, "a");
    const store = new BlobStore(dir);
    const content = bytes("%PDF-1.4 not really\n");
    const { sha256: hash, size } = await store.put(content);
    expect(hash).toBe(sha256(content));
    expect(size).toBe(content.byteLength);
    expect(store.path(hash)).toBe(join(dir, "sha256", hash.slice(0, 2), hash));
    expect(new Uint8Array(readFileSync(store.path(hash)))).toEqual(content);
    expect(await store.get(hash)).toEqual(content);
    expect(await store.has(hash)).toBe(true);
    expect(statSync(store.path(hash)).mode & 0o777).toBe(0o600);
  });

  test("an unknown blob is null, not an error", async () => {
    const store = new BlobStore(join(root, "b"));
    const absent = sha256(bytes("never stored"));
    expect(await store.get(absent)).toBeNull();
    expect(await store.has(absent)).toBe(false);
  });

  test("put is idempotent: an existing blob is not rewritten, and no temp file is left", async () => {
    const store = new BlobStore(join(root, "c"));
    const content = bytes("the same attachment in two messages");
    const first = await store.put(content);
    const before = statSync(store.path(first.sha256));
    const again = await Promise.all([store.put(content), store.put(new Uint8Array(content))]);
    expect(again).toEqual([first, first]);
    const after = statSync(store.path(first.sha256));
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    expect(readdirSync(join(root, "c", "sha256", first.sha256.slice(0, 2)))).toEqual([first.sha256]);
  });

  test("puts at once into a new store all land whole, and leave no temp file", async () => {
    const store = new BlobStore(join(root, "h"));
    const contents = Array.from({ length: 300 }, (_, i) => bytes(`attachment ${i}`));
    const refs = await Promise.all(contents.map((c) => store.put(c)));
    for (const [i, ref] of refs.entries()) expect(await store.get(ref.sha256)).toEqual(contents[i]!);
    const files = readdirSync(join(root, "h", "sha256"), { recursive: true }).map(String);
    expect(files.filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  test("a blob is never visible half-written under its final name", async () => {
    const store = new BlobStore(join(root, "d"));
    const content = Buffer.alloc(16 * 1024 * 1024, "half-written? ");
    const final = store.path(sha256(content));
    const seen = new Set<string>();
    let writing = true;
    const watcher = (async () => {
      while (writing) {
        try {
          seen.add(statSync(final).size === content.byteLength ? "whole" : "partial");
        } catch {
          seen.add("absent");
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    await store.put(content);
    writing = false;
    await watcher;
    expect(seen.has("partial")).toBe(false);
    expect(sha256((await store.get(sha256(content)))!)).toBe(sha256(content));
  });

  const strace = spawnSync("strace", ["-V"]).status === 0;
  test.skipIf(!strace)("durability order: write and fsync the temp file, rename it, then fsync the directory", () => {
    const dir = join(root, "e");
    const log = join(root, "e.strace");
    const script = `import { BlobStore } from ${JSON.stringify(join(import.meta.dir, "blobs.ts"))};
      await new BlobStore(${JSON.stringify(dir)}).put(new TextEncoder().encode("durable"));`;
    const run = spawnSync("strace", [
      "-f",
      "-qq",
      "-o",
      log,
      "-e",
      "trace=openat,write,pwrite64,fsync,fdatasync,rename,renameat,renameat2",
      process.execPath,
      "-e",
      script,
    ]);
    if (run.status !== 0 && /ptrace|Operation not permitted/.test(String(run.stderr))) return; // no ptrace in this sandbox
    expect(run.status).toBe(0);

    const hash = sha256(bytes("durable"));
    const shard = join(dir, "sha256", hash.slice(0, 2));
    const final = join(shard, hash);
    // Follow file descriptors by what they were opened as, in the order the calls returned.
    const fds = new Map<string, string>();
    const events: string[] = [];
    // Under load a call of one thread is cut in two by another's: join "<unfinished ...>" with its "<... resumed>".
    const pending = new Map<string, string>();
    const lines: string[] = [];
    for (const raw of readFileSync(log, "utf8").split("\n")) {
      const pid = /^(\d+)\s/.exec(raw)?.[1] ?? "";
      if (raw.endsWith(" <unfinished ...>")) pending.set(pid, raw.slice(0, -" <unfinished ...>".length));
      else if (/<\.\.\. \w+ resumed>/.test(raw) && pending.has(pid)) {
        lines.push(pending.get(pid)! + raw.replace(/^.*?<\.\.\. \w+ resumed>/, ""));
        pending.delete(pid);
      } else lines.push(raw);
    }
    for (const line of lines) {
      const open = /openat\(AT_FDCWD, "([^"]+)".*\) = (\d+)$/.exec(line);
      if (open) fds.set(open[2]!, open[1]!);
      const onFd = /\b(write|pwrite64|fsync|fdatasync)\((\d+)/.exec(line);
      const file = onFd && fds.get(onFd[2]!);
      if (file?.endsWith(".tmp"))
        events.push(onFd![1] === "fsync" || onFd![1] === "fdatasync" ? "sync temp" : "write temp");
      if (file === shard && onFd![1] === "fsync") events.push("sync dir");
      const moved = /rename(?:at2?)?\(.*"([^"]+\.tmp)".*"([^"]+)"/.exec(line);
      if (moved && moved[2] === final) events.push("rename");
    }
    expect(events.filter((e, i) => e !== events[i - 1])).toEqual(["write temp", "sync temp", "rename", "sync dir"]);
  });

  test("anything but 64 lower-case hex is refused, so no name reaches outside the store", async () => {
    const store = new BlobStore(join(root, "f"));
    const good = sha256(bytes("x"));
    for (const bad of [
      "../../etc/passwd",
      good.toUpperCase(),
      good.slice(1),
      `${good}0`,
      `${good.slice(0, 63)}g`,
      "",
      `../${good.slice(3)}`,
    ]) {
      expect(() => store.path(bad)).toThrow(/64 lower-case hex/);
      await expect(store.has(bad)).rejects.toThrow(/64 lower-case hex/);
      await expect(store.get(bad)).rejects.toThrow(/64 lower-case hex/);
      await expect(store.delete([bad])).rejects.toThrow(/64 lower-case hex/);
    }
  });

  test("delete removes the named blobs and counts the ones that were there", async () => {
    const store = new BlobStore(join(root, "g"));
    const kept = await store.put(bytes("still referenced"));
    const a = await store.put(bytes("expired a"));
    const b = await store.put(bytes("expired b"));
    expect(await store.delete([a.sha256, b.sha256, sha256(bytes("never stored"))])).toBe(2);
    expect(await Promise.all([store.has(a.sha256), store.has(b.sha256), store.has(kept.sha256)])).toEqual([
      false,
      false,
      true,
    ]);
    expect(await store.delete([a.sha256])).toBe(0);
  });

  test("the temp files of puts a crash cut short are removed at start-up; finished blobs and other files stay", async () => {
    const dir = join(root, "leftovers");
    const store = new BlobStore(dir);
    const kept = await store.put(bytes("a finished attachment"));
    // What a SIGKILL between the temp file's creation and its rename leaves behind.
    const shard = join(dir, "sha256", kept.sha256.slice(0, 2));
    const temp = join(shard, `${kept.sha256}.0123456789ab.tmp`);
    const other = join(dir, "sha256", "ab");
    mkdirSync(other, { recursive: true });
    const temp2 = join(other, `${"ab".padEnd(64, "c")}.ba9876543210.tmp`);
    writeFileSync(temp, "half an attachm");
    writeFileSync(temp2, "");
    writeFileSync(join(shard, "not-ours.txt"), "someone else's");
    expect(await new BlobStore(dir).removeTemps()).toBe(2);
    expect([existsSync(temp), existsSync(temp2)]).toEqual([false, false]);
    expect(await store.has(kept.sha256)).toBe(true);
    expect(existsSync(join(shard, "not-ours.txt"))).toBe(true);
    expect(await new BlobStore(join(root, "never-made")).removeTemps()).toBe(0);
  });
});
