import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Ext4Disk, mountExt4 } from "../../test/helpers/mount.ts";
import { tempStorages } from "../../test/helpers/storage.ts";
import { JournalProbe } from "./journal-probe.ts";

describe("the journal probe: no acknowledgement the filesystem may not keep", () => {
  const root = mkdtempSync(join(tmpdir(), "agentowl-probe-"));
  let disk: Ext4Disk | null = null;
  afterAll(() => {
    disk?.unmount();
    rmSync(root, { recursive: true, force: true });
  });
  const storage = tempStorages();

  test("on ext4 whose journal was aborted (errors=remount-ro), the probe throws while it still passes on a healthy one", () => {
    const dir = join(root, "data");
    disk = mountExt4(dir, join(root, "disk.img"), "16M");
    if (!disk) {
      console.warn(
        "skipped: cannot mount an ext4 loop device with its error trigger here (needs root, losetup and mkfs.ext4)",
      );
      return;
    }
    const probe = new JournalProbe(join(dir, "probe"));
    for (let i = 0; i < 3; i++) probe.check();
    disk.failReadOnly();
    expect(() => probe.check()).toThrow(/EROFS|EIO|read-only/i);
    probe.close();
  });

  test("a commit the probe refuses is answered as storage unavailable (try again later) to every unit of its batch", async () => {
    const s = storage();
    let failing = false;
    const committer = s.committer as unknown as { opts: { verify?: () => void } };
    const real = committer.opts.verify;
    committer.opts.verify = () => {
      if (failing) throw Object.assign(new Error("EROFS: read-only file system, ftruncate"), { code: "EROFS" });
      real?.();
    };
    await s.committer.run((tx) => tx.emit({ topic: "t", payload: { n: 0 } }));
    failing = true;
    const batch = [1, 2, 3].map((n) => s.committer.run((tx) => tx.emit({ topic: "t", payload: { n } })));
    for (const r of await Promise.allSettled(batch)) {
      expect(r.status).toBe("rejected");
      expect((r as PromiseRejectedResult).reason).toMatchObject({ kind: "storage_full" });
    }
    failing = false;
    await s.committer.run((tx) => tx.emit({ topic: "t", payload: { n: 4 } }));
    expect(s.committer.stats().failedCommits).toBe(1);
  });
});
