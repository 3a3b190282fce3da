import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";

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

export interface Ext4Disk {
  /** Turn the filesystem read-only under whatever has files open on it, as ext4 does on an I/O error (errors=remount-ro). */
  failReadOnly(): void;
  /** With nothing open on it: unmount, fsck, mount again writable, as an operator would after replacing the disk. */
  repair(): void;
  unmount(): void;
}

/**
 * A small real ext4 filesystem on a loop device, mounted with errors=remount-ro: unlike a remount
 * (refused with EBUSY while a file is open for writing, as the database always is), ext4's own
 * error handling turns it read-only under open files. Null where loop devices, mkfs.ext4 or the
 * ext4 error trigger are not available: the caller says it skipped.
 */
export function mountExt4(dir: string, image: string, size: string): Ext4Disk | null {
  mkdirSync(dir, { recursive: true });
  const run = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { encoding: "utf8" });
  if (run("truncate", "-s", size, image).status !== 0 || run("mkfs.ext4", "-q", "-F", image).status !== 0) return null;
  const mount = () => run("mount", "-o", "loop,errors=remount-ro", image, dir).status === 0;
  if (!mount()) return null;
  const device = () => run("findmnt", "-n", "-o", "SOURCE", dir).stdout.trim().split("/").pop() ?? "";
  const trigger = () => `/sys/fs/ext4/${device()}/trigger_fs_error`;
  if (!existsSync(trigger())) {
    run("umount", dir);
    return null;
  }
  return {
    failReadOnly: () => writeFileSync(trigger(), "1"),
    repair() {
      if (run("umount", dir).status !== 0)
        throw new Error(`umount ${dir} failed: something still has files open there`);
      const fsck = run("e2fsck", "-fy", image);
      // 0: clean, 1: errors corrected (the error the trigger recorded).
      if (fsck.status !== 0 && fsck.status !== 1) throw new Error(`e2fsck: ${fsck.stdout}${fsck.stderr}`);
      if (!mount()) throw new Error(`mounting ${image} again failed`);
    },
    unmount: () => void run("umount", "-l", dir),
  };
}
