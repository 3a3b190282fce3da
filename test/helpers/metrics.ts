/**
 * Reading the appliance's own counters in a test: a counter that moved is the positive signal a
 * test waits for before it asserts that something else did not happen.
 */

/** Anything that renders the Prometheus text exposition (src/core/metrics.ts's `Metrics`). */
export interface RendersMetrics {
  render(): Promise<string>;
}

/**
 * The sum of the series named `name` whose labels include `labels` (0 when there is none), from
 * the Prometheus text `text`.
 */
export function metricIn(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const [, k, v] of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(k!, v!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[3]);
  }
  return sum;
}

/** The current value of `name` (summed over the series that carry `labels`) in `metrics`. */
export async function metric(
  metrics: RendersMetrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return metricIn(await metrics.render(), name, labels);
}
