import { fdatasync } from "node:fs";

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * Group fsync of one file, off the event loop: `sync()` resolves once an fdatasync that began
 * after the call has finished. Callers that arrive while one runs share the next, so a burst of
 * writes costs two fdatasyncs, not one each (the spool: src/ingress/smtp/spool.ts).
 */
export class GroupFsync {
  private waiters: Waiter[] = [];
  private syncing = false;
  syncs = 0;

  constructor(
    private readonly fd: () => number,
    /** After a failed fdatasync: every waiter has been rejected with `error`. */
    private readonly onError: (error: Error) => void = () => {},
  ) {}

  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.kick();
    });
  }

  /** Nothing running or waiting. */
  get idle(): boolean {
    return !this.syncing && this.waiters.length === 0;
  }

  private kick(): void {
    if (this.syncing || this.waiters.length === 0) return;
    this.syncing = true;
    const batch = this.waiters;
    this.waiters = [];
    fdatasync(this.fd(), (err) => {
      this.syncing = false;
      this.syncs++;
      if (err) {
        // After a failed fsync the kernel may have dropped the dirty pages: nobody waiting is safe.
        for (const w of [...batch, ...this.waiters.splice(0)]) w.reject(err);
        this.onError(err);
        return;
      }
      for (const w of batch) w.resolve();
      this.kick();
    });
  }
}
