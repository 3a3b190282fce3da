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
