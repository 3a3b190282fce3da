import { expect, test } from "bun:test";
import { Counter, counterSeries, Histogram, histogramSeries, Registry } from "./prom.ts";

/** Two registries, the same metrics in each: one fed through prom-client's API, one through the series. */
function pair() {
  const make = () => {
    const registry = new Registry();
    const counter = new Counter({
      name: "t_requests_total",
      help: "h",
      labelNames: ["channel", "outcome"] as const,
      registers: [registry],
    });
    const histogram = new Histogram({
      name: "t_seconds",
      help: "h",
      labelNames: ["channel"] as const,
      buckets: [0.0005, 0.001, 0.01, 1],
      registers: [registry],
    });
    return { registry, counter, histogram };
  };
  return { api: make(), series: make() };
}

test("a series counts and observes exactly as prom-client's own calls: the same /metrics text", async () => {
  const { api, series } = pair();
  // Labels render in the order of the object the series was made with, as prom-client renders the first caller's.
  const accepted = counterSeries(series.counter, { channel: "webhook", outcome: "accepted" });
  const duplicate = counterSeries(series.counter, { channel: "webhook", outcome: "duplicate" });
  const seconds = histogramSeries(series.histogram, { channel: "webhook" });
  const values = [0.0001, 0.0005, 0.0007, 0.001, 0.5, 1, 3, 0, 0.01];
  for (const v of values) {
    api.counter.inc({ channel: "webhook", outcome: "accepted" });
    accepted();
    api.histogram.observe({ channel: "webhook" }, v);
    seconds(v);
  }
  api.counter.inc({ channel: "webhook", outcome: "duplicate" }, 3);
  duplicate(3);
  expect(await series.registry.metrics()).toBe(await api.registry.metrics());
  expect(await series.registry.metrics()).toContain('t_requests_total{channel="webhook",outcome="accepted"} 9');
  expect(await series.registry.metrics()).toContain('t_seconds_bucket{le="0.001",channel="webhook"} 5');
});

test("a series goes on counting after the registry is reset, and refuses what prom-client refuses", async () => {
  const { api, series } = pair();
  const accepted = counterSeries(series.counter, { channel: "webhook", outcome: "accepted" });
  const seconds = histogramSeries(series.histogram, { channel: "webhook" });
  accepted();
  seconds(0.002);
  series.registry.resetMetrics();
  api.counter.inc({ channel: "webhook", outcome: "accepted" }, 2);
  accepted(2);
  api.histogram.observe({ channel: "webhook" }, 0.02);
  seconds(0.02);
  expect(await series.registry.metrics()).toBe(await api.registry.metrics());
  expect(() => accepted(-1)).toThrow();
  expect(() => seconds(Number.NaN)).toThrow();
  expect(() => counterSeries(series.counter, { channel: "webhook", nope: "x" } as never)()).toThrow();
});
