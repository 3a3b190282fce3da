import { closeSync, ftruncateSync, openSync } from "node:fs";

/**
 * Asks the filesystem, after every commit, whether it is still keeping what it acknowledged.
 *
 * ext4 fails in two steps when it meets an error under errors=remount-ro: it aborts its journal,
 * writes its superblock (milliseconds of I/O), and only then refuses writes. An fsync that ends in
 * between returns success for data whose metadata (the WAL's new size) went into a journal that
 * is never committed: after the repair those commits are gone. The crash test that fails the
 * filesystem under load (test/crash/readonly.test.ts) lost such a commit in about 1 run of 20.
 * Changing a file's size needs a journal handle, which an aborted journal refuses at once, so one
 * size change after the commit (no I/O, a few microseconds) tells whether the commit is safe to
 * acknowledge: if the journal was aborted by then, the commit is reported failed (its writers get
 * "try again later" and retry; an idempotency key folds a retry of data that did survive).
 */
export class JournalProbe {
  private fd: number | null;
  private size = 0;

  constructor(path: string) {
    this.fd = openSync(path, "w", 0o600);
  }

  /** Throws the filesystem's error (EROFS, EIO) when it no longer keeps writes. */
  check(): void {
    if (this.fd === null) return;
    this.size ^= 1;
    ftruncateSync(this.fd, this.size);
  }

  close(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // a failed filesystem may refuse even this; the process is closing the file anyway
    }
    this.fd = null;
  }
}
