/**
 * How long the event loop was held while `work` ran: the longest gap between the ticks of an
 * interval of `everyMs` (and the ticks seen).
 */
export async function longestStall<T>(
  work: () => Promise<T>,
  everyMs = 1,
): Promise<{ value: T; stallMs: number; ticks: number }> {
  let longest = 0;
  let ticks = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    ticks++;
  }, everyMs);
  try {
    const value = await work();
    return { value, stallMs: Math.max(longest, performance.now() - last), ticks };
  } finally {
    clearInterval(tick);
  }
}
