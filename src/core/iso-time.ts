/**
 * Times as the envelope and its spans write them: `new Date(at).toISOString()`, with the way back.
 * The stored form of a span keeps its start in milliseconds (src/store/spans.ts). Both ways run
 * several times for every event (its received_at, each span's start, the routing record), so the
 * minute's text (`2026-12-07T23:41:`) is made once by the runtime and the seconds and milliseconds
 * are added from tables; texts of the last two minutes are read back by their digits instead of a
 * pattern check and Date.parse (0.9% of the main thread under the dispatch bench before the first
 * of these, a table of texts by millisecond; 2.1 µs an event before the second).
 */

const TWO = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, "0"));
const THREE = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, "0"));

/** The minute (ms since the epoch / 60,000) whose text is `prefix`, and the one before it. */
let minute = Number.NaN;
let prefix = "";
let previousMinute = Number.NaN;
let previousPrefix = "";
let lastAt = Number.NaN;
let lastIso = "";

/** `new Date(at).toISOString()`, exactly (fractions of a millisecond dropped as Date drops them; years past 9999 and before 0 too). */
export function isoTime(at: number): string {
  if (at === lastAt) return lastIso;
  const ms = Math.trunc(at);
  const m = Math.floor(ms / 60_000);
  if (m !== minute) {
    const iso = new Date(ms).toISOString(); // throws RangeError for NaN and beyond Date's range, as before
    if (iso.length !== 24) return iso; // a six-digit year: not worth a table
    previousMinute = minute;
    previousPrefix = prefix;
    minute = m;
    prefix = iso.slice(0, 17);
  }
  const r = ms - m * 60_000;
  const s = Math.floor(r / 1000);
  // Flattened once here (one small copy), not by every reader of a rope.
  lastIso = `${prefix}${TWO[s]}.${THREE[r - s * 1000]}Z`;
  lastAt = at;
  return lastIso;
}

/** Two ASCII digits at `i` as a number, or -1. */
function digits2(text: string, i: number): number {
  const a = text.charCodeAt(i) - 48;
  const b = text.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

/**
 * The milliseconds since the epoch of `iso` when it is toISOString's form of a time in the last two
 * minutes isoTime wrote, else undefined (the caller parses it).
 */
export function isoTimeMs(iso: string): number | undefined {
  if (iso.length !== 24 || iso.charCodeAt(19) !== 46 || iso.charCodeAt(23) !== 90) return undefined; // . Z
  let m: number;
  if (prefix && iso.startsWith(prefix)) m = minute;
  else if (previousPrefix && iso.startsWith(previousPrefix)) m = previousMinute;
  else return undefined;
  const s = digits2(iso, 17);
  const hundreds = iso.charCodeAt(20) - 48;
  const rest = digits2(iso, 21);
  if (s < 0 || s > 59 || hundreds < 0 || hundreds > 9 || rest < 0) return undefined;
  return m * 60_000 + s * 1000 + hundreds * 100 + rest;
}
