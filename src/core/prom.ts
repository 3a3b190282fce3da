/**
 * prom-client's four classes the appliance uses, from their own modules: its index also loads the
 * push gateway (node:http), the cluster aggregator (node:cluster), summaries (tdigest) and the
 * default process metrics with @opentelemetry/api, 90-odd modules an idle appliance never uses
 * (docs/performance.md#idle-memory). The same module objects as the index's, so the types match.
 */
import type * as Prom from "prom-client";

export const Counter: typeof Prom.Counter = require("prom-client/lib/counter");
export const Gauge: typeof Prom.Gauge = require("prom-client/lib/gauge");
export const Histogram: typeof Prom.Histogram = require("prom-client/lib/histogram");
export const Registry: typeof Prom.Registry = require("prom-client/lib/registry");
export type Counter<T extends string = string> = Prom.Counter<T>;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export type Histogram<T extends string = string> = Prom.Histogram<T>;
export type Registry = Prom.Registry;

const { hashObject } = require("prom-client/lib/util") as {
  hashObject(labels: Record<string, string>, sortedLabelNames?: readonly string[]): string;
};

/** The parts of prom-client's counter and histogram the series below read (prom-client 15, pinned). */
interface CounterInternals {
  hashMap: Record<string, { value: number } | undefined>;
  sortedLabelNames: readonly string[];
}
interface HistogramInternals {
  hashMap: Record<string, { sum: number; count: number; bucketValues: Record<string, number> } | undefined>;
  sortedLabelNames: readonly string[];
  upperBounds: readonly number[];
}

/**
 * One series of a counter, its labels fixed: `inc` adds to prom-client's own entry for them, its
 * key made once, instead of prom-client validating and hashing the labels on every call (the
 * webhook path counts every request twice). The first call, and any after the registry was
 * reset, goes through prom-client's `inc`, which checks the labels and makes the entry. The same
 * numbers in /metrics as `counter.inc(labels)` (src/core/prom.test.ts).
 */
export function counterSeries<T extends string>(counter: Counter<T>, labels: Record<T, string>): (n?: number) => void {
  const c = counter as unknown as CounterInternals;
  const key = hashObject(labels, c.sortedLabelNames);
  return (n = 1) => {
    const entry = c.hashMap[key];
    if (entry && n > 0) entry.value += n;
    else counter.inc(labels, n);
  };
}

/** One series of a histogram, its labels fixed, the same way: the bucket found in a plain array, no hashing per observation. */
export function histogramSeries<T extends string>(
  histogram: Histogram<T>,
  labels: Record<T, string>,
): (value: number) => void {
  const h = histogram as unknown as HistogramInternals;
  const key = hashObject(labels, h.sortedLabelNames);
  const bounds = h.upperBounds;
  const names = bounds.map(String);
  return (value) => {
    const entry = h.hashMap[key];
    if (!entry || !Number.isFinite(value)) return histogram.observe(labels, value);
    entry.sum += value;
    entry.count += 1;
    for (let i = 0; i < bounds.length; i++)
      if (value <= bounds[i]!) {
        entry.bucketValues[names[i]!]! += 1;
        return;
      }
  };
}

/** Series made on first use, one per key (a label value known only per request), then kept. */
export function seriesBy<K, S>(make: (key: K) => S): (key: K) => S {
  const made = new Map<K, S>();
  return (key) => {
    let series = made.get(key);
    if (series === undefined) made.set(key, (series = make(key)));
    return series;
  };
}
