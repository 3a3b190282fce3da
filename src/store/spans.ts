import { isoTimeMs } from "../core/iso-time.ts";
import type { Span } from "../events/envelope.ts";

/**
 * How a trace is stored, by both drivers: each span as a tuple `[name, start, duration_ms,
 * outcome]` or `[name, start, duration_ms, outcome, detail]`, `start` in milliseconds since the
 * epoch, instead of the API's object with its keys and an ISO time. A dispatched webhook's event
 * and delivery carry eight spans; as objects they were about 1 KiB of each event's rows, written
 * again into every page its commits touch; as tuples they take about half of that
 * (docs/envelope.md; measured in docs/performance.md, "Late evening of 2026-12-06"). Readers get the API's `Span` objects back, exactly: `start` is
 * kept as a tuple only when it is the canonical ISO form `toISOString()` gives back. Anything else
 * (a start in another form, rows written before this encoding) is stored and read as it is.
 */
export type StoredSpan =
  | [name: string, start: number, durationMs: number, outcome: Span["outcome"]]
  | [name: string, start: number, durationMs: number, outcome: Span["outcome"], detail: string];

const CANONICAL_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let lastStart = "";
let lastAt = Number.NaN;
/**
 * `start` in ms when it is canonical, else NaN: from isoTime's table when it made `start` (a span
 * made by spanOf), else checked and parsed, remembered for the last one.
 */
function startMs(start: string): number {
  const made = isoTimeMs(start);
  if (made !== undefined) return made;
  if (start !== lastStart) {
    lastAt = CANONICAL_ISO.test(start) ? Date.parse(start) : Number.NaN;
    lastStart = start;
  }
  return lastAt;
}

/** `spans` in their stored form (see above), ready for JSON. */
export function storedSpans(spans: readonly Span[]): (StoredSpan | Span)[] {
  const out: (StoredSpan | Span)[] = new Array(spans.length);
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i]!;
    const at = startMs(s.start);
    if (Number.isNaN(at)) out[i] = s;
    else
      out[i] =
        s.detail === undefined
          ? [s.name, at, s.duration_ms, s.outcome]
          : [s.name, at, s.duration_ms, s.outcome, s.detail];
  }
  return out;
}

/** The JSON text of `spans` as stored. */
export const spansJson = (spans: readonly Span[]): string => JSON.stringify(storedSpans(spans));

/** A stored trace (parsed JSON: tuples, objects, or both) as the API's spans; anything but an array is none. */
export function spansFrom(stored: unknown): Span[] {
  if (!Array.isArray(stored)) return [];
  const out: Span[] = new Array(stored.length);
  for (let i = 0; i < stored.length; i++) {
    const x: unknown = stored[i];
    if (!Array.isArray(x)) {
      out[i] = x as Span;
      continue;
    }
    const span: Span = {
      name: x[0] as string,
      start: new Date(x[1] as number).toISOString(),
      duration_ms: x[2] as number,
      outcome: x[3] as Span["outcome"],
    };
    if (x.length > 4) span.detail = x[4] as string;
    out[i] = span;
  }
  return out;
}
