import { warn } from "./parse.ts";

/**
 * Where mailparser 3.9.31 reads a message wrong, the corrections the body parser (parse-worker.ts)
 * applies, each reported in parse_warnings.
 *
 * 1. repairDelimiters, a pre-pass over a message's bytes before mailparser reads them: boundary
 *    delimiter lines with whitespace after the boundary become plain delimiter lines.
 * 2. decodeFieldBytes, the decoding of a MIME part's raw 8-bit header bytes (a UTF-8 `name=`).
 */

// 1. Delimiter lines

/*
 * RFC 2046 §5.1.1: `dash-boundary transport-padding CRLF`, where transport-padding is any linear
 * whitespace a gateway may have added ("--frontier \r\n" is a delimiter). mailparser 3.9.31
 * (@zone-eu/mailsplit 5.4.19, `compareBoundary`) takes only `--boundary` or `--boundary--`
 * directly followed by the line ending, so a message whose delimiters carry padding is read as
 * one text body holding the whole MIME tree, and its attachments are lost.
 *
 * Only the boundaries a `Content-Type: multipart/…` field declares are recognised, and only
 * fields of the header blocks mailparser reads as such: the message's own, and those of the parts
 * of its multiparts (after a delimiter line, up to the empty line). A Content-Type line quoted in
 * a text body, or in the body of an attached message/rfc822 (which mailparser keeps as one
 * attachment, byte for byte), declares nothing, so such an attachment is never changed. Only
 * lines that start with `--` and are short enough to be a delimiter are looked at, and only
 * their trailing spaces and tabs are removed: every other byte is passed through.
 *
 * One forward pass with bounded state (at most MAX_BOUNDARIES boundaries, a Content-Type field
 * read up to MAX_FIELD bytes, at most MAX_DELIMITERS delimiter lines), line by line in header
 * blocks and from one `\n--` to the next elsewhere, so its cost is linear in the message (which
 * the SMTP listener has already bounded by smtp_max_message_size). When nothing needs repair
 * the input is returned as it is.
 *
 * A boundary that itself ends in whitespace (not allowed by RFC 2046's `bcharsnospace`, but
 * sent: mime4j's weird-boundary.eml) is matched with its whitespace, so a line that lacks some
 * of it is still body text, as mime4j expects.
 */

/** RFC 2046 allows 70 characters of boundary; mailsplit takes any. A delimiter line longer than this is not looked at. */
export const MAX_DELIMITER_LINE = 1000;
/** As many as mailsplit's MAX_CHILD_NODES: a message cannot have more multiparts than parts. */
const MAX_BOUNDARIES = 1000;
/**
 * mailsplit gives up on a message of more than 1000 parts (MAX_CHILD_NODES), whatever this pass
 * does: past this many delimiter lines the rest is passed through unread.
 */
const MAX_DELIMITERS = 2000;
/** A Content-Type field is read up to this many bytes to find its boundary. */
const MAX_FIELD = 8 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;
const CONTENT_TYPE = "content-type:";
const LINE_OF_DASHES = Buffer.from("\n--");

export interface DelimiterRepair {
  /** The message with its padded delimiter lines repaired; the input itself when none were. */
  bytes: Uint8Array;
  /** How many delimiter lines had their padding removed. */
  repaired: number;
  /** Boundaries of multipart Content-Types for which no delimiter line was found. */
  unmatched: string[];
}

export function repairDelimiters(raw: Uint8Array): DelimiterRepair {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  /** Declared boundaries, and whether a delimiter line of each was seen. */
  const declared = new Map<string, boolean>();
  /** The few declared boundaries that end in whitespace: matched by prefix. */
  const padded: string[] = [];
  /** Lengths of the declared boundaries, to skip most lines without making a string of them. */
  const lengths = new Set<number>();
  /** The repaired message, written as far as `written` from the input up to `copiedTo`; allocated at the first repair. */
  let out: Buffer | null = null;
  let written = 0;
  let copiedTo = 0;
  let repaired = 0;
  let delimiters = 0;
  let field: string | null = null;
  /** In a header block: the message's first, then each part's after its delimiter line. */
  let inHeader = true;

  const declare = (text: string) => {
    const boundary = multipartBoundary(text);
    if (boundary === null || declared.has(boundary) || declared.size >= MAX_BOUNDARIES) return;
    declared.set(boundary, false);
    lengths.add(boundary.length);
    if (/[ \t]$/.test(boundary)) padded.push(boundary);
  };

  for (let pos = 0; pos < bytes.length && delimiters < MAX_DELIMITERS; ) {
    // Outside a header block only a line that starts with "--" matters: go straight to the next.
    if (!inHeader && !(bytes[pos] === DASH && bytes[pos + 1] === DASH)) {
      const at = bytes.indexOf(LINE_OF_DASHES, pos);
      if (at < 0) break;
      pos = at + 1;
    }
    const lf = bytes.indexOf(LF, pos);
    const next = lf < 0 ? bytes.length : lf + 1;
    let end = lf < 0 ? bytes.length : lf;
    if (end > pos && bytes[end - 1] === CR) end--;
    const first = bytes[pos];

    // A Content-Type field and its folded continuation lines (RFC 5322 §2.2.3).
    if (field !== null) {
      if (first === 0x20 || first === 0x09) {
        if (field.length < MAX_FIELD)
          field += bytes.toString("latin1", pos, Math.min(end, pos + MAX_FIELD - field.length));
        pos = next;
        continue;
      }
      declare(field);
      field = null;
    }
    if (inHeader && end === pos) {
      inHeader = false;
    } else if (
      inHeader &&
      (first === 0x43 || first === 0x63) &&
      end - pos > CONTENT_TYPE.length &&
      bytes.toString("latin1", pos, pos + CONTENT_TYPE.length).toLowerCase() === CONTENT_TYPE
    ) {
      field = bytes.toString("latin1", pos + CONTENT_TYPE.length, Math.min(end, pos + MAX_FIELD));
    } else if (first === DASH && bytes[pos + 1] === DASH && declared.size > 0 && end - pos <= MAX_DELIMITER_LINE) {
      let trimmed = end;
      while (trimmed > pos + 2 && (bytes[trimmed - 1] === 0x20 || bytes[trimmed - 1] === 0x09)) trimmed--;
      const core = trimmed - pos - 2;
      const boundary =
        lengths.has(core) || lengths.has(core - 2) || padded.length > 0
          ? delimiterOf(bytes.toString("latin1", pos + 2, end), declared, padded)
          : null;
      if (boundary !== null) {
        declared.set(boundary.value, true);
        delimiters++;
        // A part's header block follows a delimiter; the epilogue follows the close delimiter.
        inHeader = boundary.length === boundary.value.length;
        const kept = pos + 2 + boundary.length;
        if (kept < end) {
          // Keep `--boundary[--]`, drop the padding, keep the line ending as it was.
          out ??= Buffer.allocUnsafe(bytes.length);
          written += bytes.copy(out, written, copiedTo, kept);
          written += bytes.copy(out, written, end, next);
          copiedTo = next;
          repaired++;
        }
      }
    }
    pos = next;
  }
  if (field !== null) declare(field);

  // Cut short, the pass cannot say which boundaries appear later.
  const unmatched = delimiters < MAX_DELIMITERS ? [...declared].filter(([, seen]) => !seen).map(([b]) => b) : [];
  if (out === null) return { bytes: raw, repaired, unmatched };
  written += bytes.copy(out, written, copiedTo);
  return { bytes: out.subarray(0, written), repaired, unmatched };
}

/**
 * The declared boundary a line (without its leading `--` and its line ending) delimits, and how
 * many of its characters are the delimiter proper (`boundary` or `boundary--`); null if none.
 */
function delimiterOf(
  line: string,
  declared: Map<string, boolean>,
  padded: string[],
): { value: string; length: number } | null {
  const trimmed = line.replace(/[ \t]+$/, "");
  if (declared.has(trimmed)) return { value: trimmed, length: trimmed.length };
  if (trimmed.endsWith("--") && declared.has(trimmed.slice(0, -2)))
    return { value: trimmed.slice(0, -2), length: trimmed.length };
  for (const b of padded) {
    if (!line.startsWith(b)) continue;
    const rest = line.slice(b.length);
    const close = rest.startsWith("--") ? 2 : 0;
    if (/^[ \t]*$/.test(rest.slice(close))) return { value: b, length: b.length + close };
  }
  return null;
}

/** The boundary parameter of a Content-Type field's value when its type is multipart/*; null otherwise. */
export function multipartBoundary(value: string): string | null {
  if (!/^\s*multipart\//i.test(value)) return null;
  const m = /;\s*boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;"]+))/i.exec(value);
  if (!m) return null;
  const boundary = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!;
  return boundary === "" ? null : boundary;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const lenientUtf8 = new TextDecoder("utf-8");

// 2. The 8-bit bytes of a part's header fields

/**
 * The header fields of MIME parts (Content-Type, Content-Disposition: where an attachment's name
 * comes from) as mailsplit reads them, in `Headers._decodeHeaderValue`: the field's bytes as UTF-8
 * if that decoding holds no U+FFFD, else every byte as latin1. So a valid UTF-8 `name=` whose
 * field also holds one stray byte (a name cut mid-character: flanker/russian-attachment-yahoo.eml),
 * or a real U+FFFD, comes out as latin1 mojibake. Here instead: valid UTF-8 is UTF-8; bytes that
 * are UTF-8 but for some stray ones are UTF-8 with U+FFFD for those; only a field with no UTF-8
 * sequence at all (an unlabelled legacy charset) is latin1, which keeps every byte. Either of the
 * last two is a warning. parse-worker.ts puts this in mailsplit's place.
 */
export function decodeFieldBytes(field: string, warnings: string[]): string {
  if (!/[\x80-\xff]/.test(field)) return field;
  const bytes = Buffer.from(field, "latin1");
  try {
    return strictUtf8.decode(bytes);
  } catch {
    // not all of it is UTF-8
  }
  const name =
    field
      .slice(0, Math.max(0, field.indexOf(":")))
      .trim()
      .toLowerCase() || "field";
  const lenient = lenientUtf8.decode(bytes);
  if (/[\u0080-\ufffc\ufffe-\u{10ffff}]/u.test(lenient)) {
    warn(warnings, `MIME part header ${name} is UTF-8 with bytes that are not: those read as U+FFFD`);
    return lenient;
  }
  warn(warnings, `MIME part header ${name} has 8-bit bytes that are not UTF-8: decoded as latin1`);
  return field;
}
