/** @jsxImportSource hono/jsx */
/** One span of an event's trace (events/envelope.ts Span), its start in ms since the epoch. */
export interface TimelineSpan {
  name: string;
  startMs: number;
  durationMs: number;
  outcome: "ok" | "error" | "skipped";
  detail?: string;
  /** The delivery's endpoint, for a task's span. */
  endpoint?: string;
}

/** The bar's box on a 0..1000 scale: x and width proportional to the span's start and duration. */
export function barOf(span: TimelineSpan, t0: number, total: number): { x: number; width: number } {
  const x = Math.min(1000, ((span.startMs - t0) / total) * 1000);
  // A span too short to see still gets a sliver, kept inside the track.
  const width = Math.max(2, Math.min(1000 - x, (span.durationMs / total) * 1000));
  return { x: Math.max(0, Math.min(x, 998)), width };
}

const ms = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${n.toFixed(n < 10 ? 2 : 0)} ms`);

/**
 * The trace as a timeline: one row per span, its bar an SVG rect whose x and width are the span's
 * offset and duration to scale (attributes, not inline styles: the CSP allows none).
 */
export function Timeline(props: { spans: readonly TimelineSpan[] }) {
  const spans = props.spans;
  if (!spans.length) return <p class="muted">No spans recorded.</p>;
  const t0 = Math.min(...spans.map((s) => s.startMs));
  const end = Math.max(...spans.map((s) => s.startMs + s.durationMs));
  const total = Math.max(end - t0, 0.001);
  return (
    <div class="table-wrap">
      <table class="timeline">
        <caption class="muted">{`${ms(end - t0)} from the first span to the end of the last`}</caption>
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">Starts at</th>
            <th scope="col">Takes</th>
            <th scope="col">Bar</th>
          </tr>
        </thead>
        <tbody>
          {spans.map((s) => {
            const bar = barOf(s, t0, total);
            const label = s.endpoint ? `${s.name} (${s.endpoint})` : s.name;
            return (
              <tr>
                <td>
                  {label}
                  {s.outcome === "ok" ? null : <span class="verdict-fail"> {s.outcome}</span>}
                  {s.detail ? <div class="muted">{s.detail}</div> : null}
                </td>
                <td>+{ms(s.startMs - t0)}</td>
                <td>{ms(s.durationMs)}</td>
                <td class="bar-cell">
                  <svg
                    viewBox="0 0 1000 10"
                    preserveAspectRatio="none"
                    role="img"
                    aria-label={`${label}: ${ms(s.durationMs)}`}
                  >
                    <rect class="track" x="0" y="0" width="1000" height="10" />
                    <rect
                      class={s.outcome === "ok" ? "span" : s.outcome}
                      x={bar.x.toFixed(2)}
                      y="0"
                      width={bar.width.toFixed(2)}
                      height="10"
                    />
                  </svg>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
