import type { Logger } from "../core/log.ts";

/**
 * Start-up's step timings, as debug lines ("start-up step": the step, its milliseconds, and the
 * milliseconds since the process began), so `AGENTOWL_LOG_LEVEL=debug agentowl serve` shows where
 * the time to ready goes (docs/performance.md). `from` is where the first step began (0: the exec).
 */
export function stepTimer(log: Logger, from = performance.now()): (step: string) => void {
  let last = from;
  return (step) => {
    const now = performance.now();
    log.debug("start-up step", { step, ms: round(now - last), since_exec_ms: round(now) });
    last = now;
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;
