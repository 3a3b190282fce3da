import type { Clock } from "../core/clock.ts";
import { type Schedule, systemTimers, type Timers } from "./schedule.ts";
import type { Service } from "./service.ts";

/** setTimeout's longest delay; a later time is reached in several steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export interface PeriodicTask {
  name: string;
  schedule: Schedule;
  /** One run; the next is scheduled once it has finished, so runs never overlap. */
  run: () => unknown;
  /** A run that threw: the next still comes at its time. */
  onError: (e: unknown) => void;
  clock: Clock;
  timers?: Timers;
  /** Also run once at start instead of waiting for the first scheduled time. */
  runAtStart?: boolean;
}

/** A task run on a schedule as a Service; `stop()` cancels the next run and waits for a running one. */
export class Periodic implements Service {
  readonly name: string;
  private active = false;
  private cancel: (() => void) | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly task: PeriodicTask) {
    this.name = task.name;
  }

  start(): void {
    if (this.active) return;
    this.active = true;
    if (this.task.runAtStart) this.tick();
    else this.arm(this.task.schedule(this.task.clock.now()));
  }

  async stop(): Promise<void> {
    this.active = false;
    this.cancel?.();
    this.cancel = null;
    await this.running;
  }

  private arm(due: number): void {
    if (!this.active) return;
    const wait = Math.min(MAX_DELAY_MS, Math.max(0, due - this.task.clock.now()));
    this.cancel = (this.task.timers ?? systemTimers).after(wait, () => {
      this.cancel = null;
      // A timer may fire a little early by the clock, and a far time takes several timers.
      if (this.task.clock.now() < due) this.arm(due);
      else this.tick();
    });
  }

  private tick(): void {
    const run = (async () => {
      try {
        await this.task.run();
      } catch (e) {
        this.task.onError(e);
      }
    })();
    this.running = run;
    void run.then(() => {
      this.running = null;
      this.arm(this.task.schedule(this.task.clock.now()));
    });
  }
}
