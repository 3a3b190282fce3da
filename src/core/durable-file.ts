import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/**
 * A small file (a key, a certificate) written so that after a crash or a power cut it is either
 * there whole or not there at all (guarantee 1 (docs/guarantees.md)): a temp file, fsynced, put in place by a rename (or,
 * with `exclusive`, a link that fails when the file exists), then the directory fsynced. A plain
 * write left a 0-byte master key behind a filesystem error seconds after the first start, and
 * with it every secret of the vault.
 */
export function writeFileDurably(
  path: string,
  data: string | Uint8Array,
  opts: { mode: number; exclusive?: boolean },
): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: opts.mode });
  try {
    fsyncPath(tmp);
    if (opts.exclusive) {
      linkSync(tmp, path);
      unlinkSync(tmp);
    } else renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw e;
  }
  fsyncPath(dirname(path));
}

/** fsync a file or a directory by path. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
