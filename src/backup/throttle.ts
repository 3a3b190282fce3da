import type { Clock } from "../core/clock.ts";

/**
 * A cap on the bytes per second a backup writes (`backup_max_rate`, docs/operations.md#backups):
 * `take(n)` sleeps until `n` more bytes fit under the rate. The backup then leaves the disk and a
 * core to the server's commits most of the time instead of competing for them end to end.
 *
 * Bytes are scheduled on a virtual timeline: each `take` moves the earliest time the next byte
 * may go by `n / rate`. Time the writer spent blocked elsewhere (a slow disk) is credited for at
 * most `slackMs`, so a stall is never followed by a burst at full speed to catch up.
 */
export class RateLimit {
  private next: number | null = null;
  private slept = 0;

  constructor(
    /** Bytes per second; 0 or less: no cap (`take` returns at once). */
    private readonly bytesPerSecond: number,
    private readonly clock: Clock,
    private readonly sleep: (ms: number) => void,
    private readonly slackMs = 50,
  ) {}

  /** Account for `bytes` about to be written, sleeping first if they would exceed the rate. */
  take(bytes: number): void {
    if (this.bytesPerSecond <= 0 || bytes <= 0) return;
    const now = this.clock.now();
    const start = this.next === null ? now : Math.max(this.next, now - this.slackMs);
    this.next = start + (bytes * 1000) / this.bytesPerSecond;
    // The bytes may go once the ones before them are due; the first `slackMs` of a schedule is credit.
    const wait = start - now;
    if (wait > 0) {
      this.sleep(wait);
      this.slept += wait;
    }
  }

  /** Milliseconds slept so far (logged with the backup's time: `backup written`). */
  get sleptMs(): number {
    return this.slept;
  }
}
