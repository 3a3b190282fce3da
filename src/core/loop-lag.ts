/**
 * Event-loop stall monitor (guarantee 9 (docs/guarantees.md): no input may stall the event loop that serves ingress for
 * more than 250 ms). A timer asks to run every `intervalMs`; how late it actually runs is how long
 * the loop was busy with something else. Each tick reports that lateness (0 when on time).
 *
 * A chain of setTimeout, not setInterval: an interval's missed ticks may be coalesced or fired
 * back to back, which would split one long stall into several short ones.
 */
export class LoopLagMonitor {
  private timer: Timer | null = null;
  private expected = 0;
  /** The longest stall seen since start, in ms. */
  maxMs = 0;

  constructor(
    private readonly onLag: (ms: number) => void,
    private readonly intervalMs = 25,
    private readonly now: () => number = () => performance.now(),
  ) {}

  start(): this {
    if (this.timer) return this;
    this.schedule();
    return this;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    this.expected = this.now() + this.intervalMs;
    this.timer = setTimeout(this.tick, this.intervalMs);
    // Never the reason a process stays alive.
    this.timer.unref?.();
  }

  private readonly tick = (): void => {
    // Timers fire up to a millisecond or so late on an idle loop: that is not a stall.
    const late = Math.max(0, this.now() - this.expected);
    if (late > this.maxMs) this.maxMs = late;
    this.onLag(late);
    this.schedule();
  };
}
