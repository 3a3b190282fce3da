import { expect, test } from "bun:test";
import { renderFragment } from "./render.ts";
import { BarChart, CHART_BOX, chartGeometry, chartSummary, niceCeil } from "./chart.tsx";

const PLOT_H = CHART_BOX.height - CHART_BOX.top - CHART_BOX.bottom;
const PLOT_W = CHART_BOX.width - CHART_BOX.left - CHART_BOX.right;
const BASELINE = CHART_BOX.height - CHART_BOX.bottom;

test("the axis' top is the tallest count rounded up to 1, 2 or 5 times a power of ten", () => {
  expect([0, 1, 2, 3, 7, 10, 11, 41, 99, 100, 101, 312, 5000].map(niceCeil)).toEqual([
    1, 1, 2, 5, 10, 10, 20, 50, 100, 100, 200, 500, 5000,
  ]);
});

test("bar heights are proportional to the counts and every bar stands on the baseline", () => {
  const { top, bars } = chartGeometry([[10, 0, 5, 50]]);
  expect(top).toBe(50);
  expect(bars.map((b) => b.height)).toEqual(
    [(10 / 50) * PLOT_H, 0, (5 / 50) * PLOT_H, PLOT_H].map((h) => Math.round(h * 100) / 100),
  );
  for (const b of bars) expect(b.y + b.height).toBeCloseTo(BASELINE, 1);
});

test("bars sit side by side in equal slots across the plot, none outside it", () => {
  const { bars } = chartGeometry([Array.from({ length: 60 }, (_, i) => i)]);
  expect(bars).toHaveLength(60);
  const slot = PLOT_W / 60;
  bars.forEach((b, i) => {
    expect(b.x).toBeCloseTo(CHART_BOX.left + i * slot + slot * 0.1, 1);
    expect(b.width).toBeCloseTo(slot * 0.8, 1);
    expect(b.x).toBeGreaterThanOrEqual(CHART_BOX.left);
    expect(b.x + b.width).toBeLessThanOrEqual(CHART_BOX.width - CHART_BOX.right);
    expect(b.y).toBeGreaterThanOrEqual(CHART_BOX.top - 0.01);
  });
});

test("series stack in each bucket: the second starts where the first ends; the axis fits the tallest stack", () => {
  const { top, bars } = chartGeometry([
    [3, 0],
    [2, 1],
  ]);
  expect(top).toBe(5);
  const [d0, x0, d1, x1] = bars;
  expect([d0!.bucket, d0!.series, x0!.bucket, x0!.series]).toEqual([0, 0, 0, 1]);
  expect(d0!.y + d0!.height).toBeCloseTo(BASELINE, 1);
  expect(x0!.y + x0!.height).toBeCloseTo(d0!.y, 1);
  expect(x0!.y).toBeCloseTo(CHART_BOX.top, 1);
  expect(d1!.height).toBe(0);
  expect(x1!.height).toBeCloseTo(PLOT_H / 5, 1);
});

test("an empty chart has zero-height bars and an axis up to 1", () => {
  const { top, bars } = chartGeometry([[0, 0, 0]]);
  expect(top).toBe(1);
  expect(bars.map((b) => b.height)).toEqual([0, 0, 0]);
});

const T0 = Date.UTC(2026, 0, 1, 14, 0);

test("the summary says the totals, the span and the busiest bucket's time; an empty one says none", () => {
  const counts = Array.from({ length: 60 }, () => 0);
  counts[7] = 41;
  counts[8] = 30;
  expect(
    chartSummary({
      series: [{ label: "events", class: "x", counts }],
      span: "in the last hour",
      start: T0,
      bucketMs: 60_000,
    }),
  ).toBe("71 events in the last hour, most 41 at 14:07 UTC.");
  expect(
    chartSummary({
      series: [
        { label: "delivered", class: "x", counts: [1, 4] },
        { label: "dead", class: "y", counts: [2, 0] },
      ],
      span: "in the last day",
      start: T0,
      bucketMs: 3600_000,
    }),
  ).toBe("5 delivered and 2 dead in the last day, most 4 at 15:00 UTC.");
  expect(
    chartSummary({
      series: [{ label: "events", class: "x", counts: [0, 0] }],
      span: "in the last hour",
      start: T0,
      bucketMs: 1,
    }),
  ).toBe("No events in the last hour.");
});

test("the SVG is an image named by its title and summary, with a titled rect per bar, labels as text, no inline style", async () => {
  const html = await renderFragment(
    BarChart({
      id: "c1",
      title: "Events per minute",
      span: "in the last hour",
      start: T0,
      bucketMs: 60_000,
      labelEvery: 10,
      series: [
        { label: "events", class: "bar-events", counts: Array.from({ length: 60 }, (_, i) => (i === 3 ? 4 : 0)) },
      ],
    }),
  );
  expect(html).toContain('<svg role="img" aria-labelledby="c1-title c1-desc"');
  expect(html).toContain('<title id="c1-title">Events per minute</title>');
  expect(html).toContain('<desc id="c1-desc">4 events in the last hour, most 4 at 14:03 UTC.</desc>');
  expect(html.match(/<rect /g)).toHaveLength(60);
  expect(html).toContain("<title>4 events, 14:03–14:04 UTC</title>");
  expect(html.match(/<text /g)).toHaveLength(2 + 6);
  expect(html).toContain(">14:50</text>");
  expect(html).toContain('viewBox="0 0 600 160"');
  expect(html).not.toContain("style=");
});
