import type { Clock } from "../core/clock.ts";
import { type Span, spanOf } from "../events/envelope.ts";

/** The spans of one run of a task, written with its next checkpoint (docs/architecture.md's timeline). */
export class TaskTrace {
  private spans: Span[] = [];
  constructor(private readonly clock: Clock) {}
  begin(): { at: number; t0: number } {
    return { at: this.clock.now(), t0: performance.now() };
  }
  end(t: { at: number; t0: number }, name: string, outcome: Span["outcome"], detail?: string): void {
    this.push(name, t.at, performance.now() - t.t0, outcome, detail);
  }
  push(name: string, at: number, ms: number, outcome: Span["outcome"], detail?: string): void {
    this.spans.push(spanOf(name, at, ms, outcome, detail));
  }
  take(): Span[] {
    return this.spans.splice(0);
  }
  /** The spans so far, left in place. */
  peek(): Span[] {
    return [...this.spans];
  }
}
