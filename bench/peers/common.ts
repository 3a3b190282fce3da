export interface PeerResult {
  name: string;
  version: string;
  durability: string;
  enqueuePerSec: number;
  processPerSec: number;
  notes?: string;
}

export interface PeerOpts {
  dir: string;
  jobs: number;
  producers: number;
}

/** Same tiny payload for every peer so row sizes match. */
export function payload(i: number): { n: number; body: string } {
  return { n: i, body: "x".repeat(32) };
}

export function perSec(count: number, ms: number): number {
  return Math.round((count * 1000) / ms);
}

/**
 * `producers` concurrent loops, each awaiting one add before the next, until
 * `jobs` adds in total have resolved. Returns adds per second for the phase.
 */
export async function enqueueAll(opts: PeerOpts, add: (i: number) => unknown): Promise<number> {
  let next = 0;
  const producer = async (): Promise<void> => {
    while (next < opts.jobs) {
      const i = next++;
      await add(i);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: opts.producers }, producer));
  return perSec(opts.jobs, performance.now() - t0);
}

/** A promise resolved by the `n`th call of `tick`. */
export function countdown(n: number): { tick: () => void; done: Promise<void> } {
  let left = n;
  let resolve = (): void => {};
  const done = new Promise<void>((r) => (resolve = r));
  return {
    tick: () => {
      if (--left === 0) resolve();
    },
    done,
  };
}
