/**
 * The data dir on a small real filesystem (tmpfs): /readyz fails below disk_fail_free and
 * recovers when space comes back; /metrics carries the free space and the thresholds; the log
 * warns once per crossing. Skipped, with the reason printed, where a tmpfs cannot be mounted.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statfsSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApp } from "../../src/app/app.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import { loopbackConfig } from "../helpers/app.ts";
import { mountTmpfs } from "../helpers/mount.ts";

const root = mkdtempSync(join(tmpdir(), "agentowl-disk-"));
const dataDir = join(root, "data");
const unmount = mountTmpfs(dataDir, "64m");
afterAll(() => {
  unmount?.();
  rmSync(root, { recursive: true, force: true });
});
if (!unmount) console.warn("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");

test.skipIf(!unmount)("/readyz turns 503 below disk_fail_free and 200 again when space comes back", async () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    level: "info",
    redactor: new Redactor(),
    sink: (line) => void lines.push(JSON.parse(line)),
  });
  const config = loopbackConfig(root, "t".repeat(32), {
    AGENTOWL_DISK_WARN_FREE: String(24 * 1024 * 1024),
    AGENTOWL_DISK_FAIL_FREE: String(16 * 1024 * 1024),
  });
  const app = await startApp({ config, log });
  try {
    const ready = async () => {
      const res = await fetch(`${app.url}/readyz`);
      return {
        status: res.status,
        body: (await res.json()) as { checks: Record<string, { ok: boolean; detail?: string }> },
      };
    };
    expect((await ready()).status).toBe(200);
    // Fill the filesystem to 8 MiB free: below both thresholds.
    const s = statfsSync(dataDir);
    const filler = join(dataDir, "filler");
    writeFileSync(filler, Buffer.alloc(s.bavail * s.bsize - 8 * 1024 * 1024));
    const low = await ready();
    expect(low.status).toBe(503);
    expect(low.body.checks.disk!.ok).toBe(false);
    expect(low.body.checks.disk!.detail).toContain("below disk_fail_free");
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    const free = Number(/^agentowl_disk_free_bytes (\d+)/m.exec(metrics)![1]);
    expect(free).toBeLessThan(16 * 1024 * 1024);
    expect(metrics).toMatch(/^agentowl_disk_fail_free_bytes 16777216$/m);
    await ready();
    expect(lines.filter((l) => String(l.msg).startsWith("disk almost full")).length).toBe(1);
    unlinkSync(filler);
    expect((await ready()).status).toBe(200);
    expect(lines.some((l) => l.msg === "disk space is above its thresholds again")).toBe(true);
  } finally {
    await app.stop();
  }
});
