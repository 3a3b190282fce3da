/** @jsxImportSource hono/jsx */

/** One kind of count in a chart: its bars are stacked on the previous series' in each bucket. */
export interface ChartSeries {
  /** What one unit is, as the summary and the bars' titles say it ("events", "delivered"). */
  label: string;
  /** The bars' class in console.css (their colour: fill comes from the stylesheet, the CSP allows no inline style). */
  class: string;
  /** One count per bucket, oldest first. */
  counts: readonly number[];
}

export interface ChartProps {
  /** Unique on the page: the SVG's title and description ids derive from it. */
  id: string;
  /** The chart's heading ("Events per minute, last hour"). */
  title: string;
  /** "in the last hour": ends the text summary. */
  span: string;
  /** The first bucket's start (ms since the epoch) and each bucket's length. */
  start: number;
  bucketMs: number;
  series: readonly ChartSeries[];
  /** A time label under every `labelEvery`-th bar. */
  labelEvery: number;
}

/** The drawing's coordinate system (viewBox): the CSS scales it to the page's width. */
export const CHART_BOX = { width: 600, height: 160, left: 40, right: 4, top: 8, bottom: 22 } as const;

export interface Bar {
  series: number;
  bucket: number;
  count: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

const round = (n: number) => Math.round(n * 100) / 100;

/** The smallest of 1, 2, 5 × 10^k at least `n` (the axis' top; 1 for an empty chart). */
export function niceCeil(n: number): number {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

/**
 * Every bar's box: buckets side by side across the plot, each bucket's series stacked bottom up,
 * heights proportional to the counts on a 0..`top` axis (`top`: the tallest stack, rounded up
 * to a round number). A zero count is a bar of height 0, so every bucket has its bars.
 */
export function chartGeometry(
  series: readonly (readonly number[])[],
  box: typeof CHART_BOX = CHART_BOX,
): { top: number; bars: Bar[] } {
  const buckets = Math.max(0, ...series.map((s) => s.length));
  const totals = Array.from({ length: buckets }, (_, i) => series.reduce((sum, s) => sum + (s[i] ?? 0), 0));
  const top = niceCeil(Math.max(0, ...totals));
  const plotW = box.width - box.left - box.right;
  const plotH = box.height - box.top - box.bottom;
  const baseline = box.top + plotH;
  const slot = buckets ? plotW / buckets : 0;
  const width = round(slot * 0.8);
  const bars: Bar[] = [];
  for (let b = 0; b < buckets; b++) {
    let stacked = 0;
    for (let s = 0; s < series.length; s++) {
      const count = series[s]![b] ?? 0;
      const height = round((count / top) * plotH);
      const y = round(baseline - ((stacked + count) / top) * plotH);
      bars.push({ series: s, bucket: b, count, x: round(box.left + b * slot + slot * 0.1), y, width, height });
      stacked += count;
    }
  }
  return { top, bars };
}

const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);

/** The chart in words, for screen readers and as its visible caption. */
export function chartSummary(p: Pick<ChartProps, "series" | "span" | "start" | "bucketMs">): string {
  const totals = p.series.map((s) => s.counts.reduce((a, b) => a + b, 0));
  if (totals.every((t) => t === 0)) return `No ${p.series.map((s) => s.label).join(" or ")} ${p.span}.`;
  const what = p.series.map((s, i) => `${totals[i]} ${s.label}`).join(" and ");
  const buckets = Math.max(...p.series.map((s) => s.counts.length));
  let most = 0;
  let at = 0;
  for (let b = 0; b < buckets; b++) {
    const n = p.series.reduce((sum, s) => sum + (s.counts[b] ?? 0), 0);
    if (n > most) [most, at] = [n, b];
  }
  return `${what} ${p.span}, most ${most} at ${hhmm(p.start + at * p.bucketMs)} UTC.`;
}

/**
 * A bar chart drawn on the server: an SVG of <rect>s with computed boxes (no script, no chart
 * library, no inline style), axis labels as <text>, a <title> per bar (its count and time), and
 * role="img" named by the chart's title and described by its text summary.
 */
export function BarChart(props: ChartProps) {
  const box = CHART_BOX;
  const { top, bars } = chartGeometry(props.series.map((s) => s.counts));
  const baseline = box.height - box.bottom;
  const summary = chartSummary(props);
  const titleId = `${props.id}-title`;
  const descId = `${props.id}-desc`;
  const buckets = Math.max(0, ...props.series.map((s) => s.counts.length));
  const labels = Array.from({ length: buckets }, (_, b) => b).filter((b) => b % props.labelEvery === 0);
  const slot = (box.width - box.left - box.right) / Math.max(1, buckets);
  return (
    <figure class="chart" id={props.id}>
      <figcaption>
        <span class="chart-title">{props.title}</span> <span class="muted">{summary}</span>
      </figcaption>
      <svg
        role="img"
        aria-labelledby={`${titleId} ${descId}`}
        viewBox={`0 0 ${box.width} ${box.height}`}
        xmlns="http://www.w3.org/2000/svg"
      >
        <title id={titleId}>{props.title}</title>
        <desc id={descId}>{summary}</desc>
        <line class="axis" x1={box.left} y1={baseline} x2={box.width - box.right} y2={baseline} />
        <text class="tick" x={box.left - 4} y={baseline} text-anchor="end">
          0
        </text>
        <text class="tick" x={box.left - 4} y={box.top + 8} text-anchor="end">
          {String(top)}
        </text>
        {labels.map((b) => (
          <text class="tick" x={round(box.left + b * slot)} y={box.height - 6}>
            {hhmm(props.start + b * props.bucketMs)}
          </text>
        ))}
        {bars.map((bar) => {
          const s = props.series[bar.series]!;
          const from = props.start + bar.bucket * props.bucketMs;
          return (
            <rect class={`bar ${s.class}`} x={bar.x} y={bar.y} width={bar.width} height={bar.height}>
              <title>{`${bar.count} ${s.label}, ${hhmm(from)}–${hhmm(from + props.bucketMs)} UTC`}</title>
            </rect>
          );
        })}
      </svg>
    </figure>
  );
}
