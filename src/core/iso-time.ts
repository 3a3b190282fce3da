/**
 * Times as the envelope and its spans write them: `new Date(at).toISOString()`, made once per
 * millisecond, with the way back. The stored form of a span keeps its start in milliseconds
 * (src/store/spans.ts); a start this module wrote is turned back into them from a table instead
 * of a pattern check and Date.parse (0.9% of the main thread under the dispatch bench).
 */

let lastAt = Number.NaN;
let lastIso = "";
/** The milliseconds of the ISO times made lately, by their text. Bounded: cleared when full. */
const recent = new Map<string, number>();
const RECENT_MAX = 4096;

/** `new Date(at).toISOString()`, remembered for the last `at`: an event's spans, and events of the same millisecond, share it. */
export function isoTime(at: number): string {
  if (at !== lastAt) {
    lastIso = new Date(at).toISOString();
    lastAt = at;
    if (recent.size >= RECENT_MAX) recent.clear();
    recent.set(lastIso, at);
  }
  return lastIso;
}

/** The milliseconds since the epoch of `iso` when isoTime made it lately, else undefined (parse it). */
export const isoTimeMs = (iso: string): number | undefined => recent.get(iso);
