import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mountTmpfs } from "../../../test/helpers/mount.ts";
import { Spool, SpoolUnavailableError } from "./spool.ts";

const root = mkdtempSync(join(tmpdir(), "agentowl-spool-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const bytes = (s: string) => new TextEncoder().encode(s);

describe("spool", () => {
  test("messages come back byte for byte; concurrent appends share fdatasyncs", async () => {
    const spool = new Spool(join(root, "a"));
    const messages = Array.from({ length: 200 }, (_, i) => bytes(`Subject: ${i}\r\n\r\n${"x".repeat(i * 37)}\r\n`));
    const refs = await Promise.all(messages.map((m) => spool.append(m)));
    refs.forEach((ref, i) => expect(spool.read(ref)).toEqual(messages[i]!));
    expect(spool.stats.appended).toBe(200);
    // 200 appends in one event-loop turn: the first sync covers one, the next covers the rest.
    expect(spool.syncs).toBeLessThan(10);
    await spool.close();
  });

  test("a new segment per start; purge deletes old segments but never the current one", async () => {
    const dir = join(root, "b");
    const first = new Spool(dir);
    const old = await first.append(bytes("old"));
    await first.close();
    const second = new Spool(dir);
    const fresh = await second.append(bytes("fresh"));
    expect(fresh.segment).not.toBe(old.segment);
    const past = new Date(Date.now() - 3_600_000);
    utimesSync(join(dir, old.segment), past, past);
    expect(second.purge(Date.now() - 60_000)).toEqual({ segments: 1, bytes: 3 });
    expect(second.read(old)).toBeNull();
    expect(second.purge(Date.now() + 60_000).segments).toBe(0);
    expect(second.read(fresh)).toEqual(bytes("fresh"));
    await second.close();
  });

  test("at start-up, segments no message row refers to are removed; referenced ones, other files and the current segment stay", async () => {
    const dir = join(root, "orphans");
    const killed = new Spool(dir);
    const kept = await killed.append(bytes("acknowledged"));
    await killed.close();
    const dying = new Spool(dir);
    const lost = await dying.append(bytes("spooled, never committed"));
    await dying.close();
    await Bun.write(join(dir, "README"), "not a segment");
    const next = new Spool(dir);
    expect(next.removeUnreferenced(new Set([kept.segment]))).toEqual({ segments: 1, bytes: lost.length });
    expect(next.read(kept)).toEqual(bytes("acknowledged"));
    expect(next.read(lost)).toBeNull();
    const current = await next.append(bytes("new"));
    expect(next.removeUnreferenced(new Set([kept.segment])).segments).toBe(0);
    expect(next.read(current)).toEqual(bytes("new"));
    expect(readdirSync(dir)).toContain("README");
    await next.close();
  });

  test("a full disk is a SpoolUnavailableError, leaves no partial message, and the spool recovers", async () => {
    const dir = join(root, "full");
    const unmount = mountTmpfs(dir, "256k");
    if (!unmount) {
      console.warn("skipped: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
      return;
    }
    try {
      const spool = new Spool(dir);
      const small = await spool.append(bytes("fits"));
      const err = await spool.append(new Uint8Array(512 * 1024)).catch((e) => e);
      expect(err).toBeInstanceOf(SpoolUnavailableError);
      expect(err.code).toBe("ENOSPC");
      // The failed segment was cut back: only "fits" is left on the disk.
      const sizes = readdirSync(dir).map((n) => Bun.file(join(dir, n)).size);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(4);
      expect(spool.read(small)).toEqual(bytes("fits"));
      const after = await spool.append(bytes("room again"));
      expect(spool.read(after)).toEqual(bytes("room again"));
      await spool.close();
    } finally {
      unmount();
    }
  });
});
