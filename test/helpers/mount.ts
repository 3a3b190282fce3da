import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";

/**
 * A tiny real filesystem (tmpfs) to fill up or make read-only, where this machine lets us mount
 * one (root with CAP_SYS_ADMIN, as in CI's container). Returns its unmount, or null when mounting
 * is not allowed: the caller then says it skipped.
 */
export function mountTmpfs(dir: string, size: string): (() => void) | null {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
  if (r.status !== 0) return null;
  return () => void spawnSync("umount", ["-l", dir]);
}
