import { availableParallelism } from "node:os";
import addressparser from "nodemailer/lib/addressparser";
import { workerPath } from "../core/worker-path.ts";
import { WorkerQueue, type WorkerReply } from "../core/worker-queue.ts";
import type { Blobs } from "../store/index.ts";

/**
 * The MIME-parse stage (docs/architecture.md#the-smtp-pipeline): the spooled bytes become the fields of an `email.received`
 * event, and every attachment a content-addressed blob.
 *
 * It is fed whatever a sender chose to send, so it never throws for any input and never takes
 * the process down. It works in two parts:
 *
 * - The header block is read here, on the calling thread, by this module's own code: linear,
 *   non-recursive, and bounded (a field is read up to 64 KiB). From, To, Subject, the ids and
 *   `headers` come from it, so they are the same whether or not the body parses.
 * - The body goes through mailparser in a worker thread (parse-worker.ts). mailparser is a
 *   pipeline of streams and event handlers, so an exception inside it can surface as an uncaught
 *   exception rather than a rejected promise (mailparser 3.7.1 did exactly that on
 *   mimekit/stack-overflow.eml, a RangeError thrown in the address parser; 3.9.31 parses that
 *   one, in about 200 ms), and a pathological input can keep it busy or leave its promise pending
 *   forever. In-process, neither a try/catch nor a timer can stop that; a worker can be
 *   terminated mid-loop, and its crash is an `error` event here. A crash, an error or no answer
 *   within `timeoutMs` gives a headers-only result with a warning starting "parser failed", and
 *   the next message gets a fresh worker.
 *
 * The worker parses one message at a time (the ones that queued up while it was busy are sent
 * together, see BodyParser), so a message that hangs holds up the ones behind it for at most
 * `timeoutMs`, twice that when it hangs a batch, which is then parsed again one by one. Measured on the corpus' 4 to 12 KB messages: 0.5 to 1.1 ms a message,
 * 0.1 to 0.35 ms more than the same body parse in-process, the header block included (0.1 ms;
 * 5 ms for mimekit/stack-overflow.eml). The first message also waits for the worker to start
 * (about 140 ms).
 */

export interface MailAddress {
  name: string | null;
  address: string | null;
}

export interface AttachmentRef {
  filename: string | null;
  content_type: string;
  size: number;
  sha256: string;
  /** Content-ID without the angle brackets, as `cid:` URLs in the HTML name it. */
  content_id: string | null;
  disposition: "attachment" | "inline";
}

export interface ParsedMail {
  message_id: string | null;
  subject: string | null;
  /** ISO 8601; null when the Date header is missing or unreadable. */
  date: string | null;
  from: MailAddress | null;
  sender: MailAddress | null;
  reply_to: MailAddress[];
  to: MailAddress[];
  cc: MailAddress[];
  in_reply_to: string | null;
  references: string[];
  /** In order, names lower-case, values unfolded and decoded (RFC 2047); at most 500 headers and 64 KiB. */
  headers: [name: string, value: string][];
  /** text/plain, or text derived from the HTML when there is none; at most `maxTextBytes`. */
  text: string;
  /** Sanitized (sanitize.ts); at most `maxTextBytes` before sanitizing. */
  html: string | null;
  attachments: AttachmentRef[];
  /** For people, e.g. `unknown charset "x-foo": decoded as latin1`. */
  parse_warnings: string[];
}

export interface ParseOptions {
  blobs: Blobs;
  /** false: every body goes to the worker, a plain one too (tests compare the two). */
  inline?: boolean;
  /** How long the body parse may take before the message is given up as headers-only. */
  timeoutMs?: number;
  maxTextBytes?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_TEXT_BYTES = 1024 * 1024;
const MAX_HEADERS = 500;
const MAX_HEADER_BYTES = 64 * 1024;
/** How far the header block is read: bounds the work a header-only attack can cause here. */
const MAX_HEADER_BLOCK = 1024 * 1024;
const MAX_WARNINGS = 50;

/**
 * Never throws for any input and never hangs: malformed MIME still yields what could be read,
 * plus parse_warnings. It rejects only when the blob store cannot take an attachment (a full
 * disk), which the caller retries later.
 */
export async function parseMail(raw: Uint8Array, opts: ParseOptions): Promise<ParsedMail> {
  const warnings: string[] = [];
  const { fields, bodyAt } = readFields(raw, warnings);
  const maxTextBytes = opts.maxTextBytes ?? DEFAULT_MAX_TEXT_BYTES;
  let body: ParsedBody | null = opts.inline === false ? null : plainBody(fields, raw, bodyAt, maxTextBytes);
  if (body) parseCounts.inline++;
  else
    try {
      parseCounts.worker++;
      body = await bodyParser.parse({ raw, maxTextBytes }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    } catch (e) {
      warn(warnings, `parser failed: ${(e as Error).message}; headers only`);
      body = { text: "", html: null, attachments: [], warnings: [] };
    }
  for (const w of body.warnings) warn(warnings, w);

  const attachments: AttachmentRef[] = [];
  for (const { content, ...ref } of body.attachments) attachments.push({ ...ref, ...(await opts.blobs.put(content)) });

  const one = (name: string) => fields.find((f) => f.name === name)?.value;
  const all = (name: string) =>
    fields.filter((f) => f.name === name).flatMap((f) => addresses(name, f.value, warnings));
  const subject = one("subject");
  return {
    message_id: messageIds(one("message-id"))[0] ?? null,
    subject: subject === undefined ? null : decodeWords(subject, warnings),
    date: parseDate(one("date"), warnings),
    from: addresses("from", one("from"), warnings)[0] ?? null,
    sender: addresses("sender", one("sender"), warnings)[0] ?? null,
    reply_to: all("reply-to"),
    to: all("to"),
    cc: all("cc"),
    in_reply_to: messageIds(one("in-reply-to"))[0] ?? null,
    references: messageIds(one("references")),
    headers: headerList(fields, warnings),
    text: body.text,
    html: body.html,
    attachments,
    parse_warnings: warnings,
  };
}

// The header block

interface Field {
  /** Lower-case. */
  name: string;
  /** Unfolded, 8-bit bytes decoded, encoded-words (RFC 2047) still encoded. */
  value: string;
}

/** RFC 5322 §3.6.8: printable US-ASCII except the colon. */
const FIELD_NAME = /^[!-9;-~]+$/;

/**
 * The fields of the header block: the lines up to the first empty one (RFC 5322 §2.1), unfolded
 * (§2.2.3); a field is read up to 64 KiB and the block up to 1 MiB. Leniently, as mail is: a
 * leading UTF-8 BOM, mbox "From " line or whitespace line is skipped, so is a line whose name is
 * not a field name, and a line that is neither a field nor a continuation ends the block (the
 * sender forgot the empty line).
 */
function readFields(raw: Uint8Array, warnings: string[]): { fields: Field[]; bodyAt: number | null } {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const fields: { name: string; lines: string[]; length: number; cut: boolean }[] = [];
  let pos = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  // Where the body starts, when the block is plain: every line a field or its continuation, up
  // to an empty line (no BOM, mbox line, stray line or cut). Else null.
  let bodyAt: number | null = null;
  let plain = pos === 0;
  while (pos < bytes.length) {
    if (pos > MAX_HEADER_BLOCK) {
      warn(warnings, "header block longer than 1 MiB: read in part");
      plain = false;
      break;
    }
    const lf = bytes.indexOf(10, pos);
    const end = lf < 0 ? bytes.length : lf;
    let line = bytes.toString("latin1", pos, end > pos && bytes[end - 1] === 13 ? end - 1 : end);
    pos = end + 1;
    if (line === "") {
      if (plain && lf >= 0) bodyAt = pos;
      break;
    }
    const last = fields.at(-1);
    if (line[0] === " " || line[0] === "\t") {
      if (last) {
        if (last.length + line.length > MAX_HEADER_BYTES) last.cut = true;
        else last.lines.push(line);
        last.length += line.length;
        continue;
      }
      plain = false;
      line = line.trimStart();
      if (line === "") continue;
    }
    if (fields.length === 0 && /^From [^\s:]/.test(line)) {
      plain = false;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon < 0) break;
    const name = line.slice(0, colon).trimEnd();
    const value = line.slice(colon + 1, colon + 1 + MAX_HEADER_BYTES);
    if (FIELD_NAME.test(name))
      fields.push({
        name: name.toLowerCase(),
        lines: [value],
        length: value.length,
        cut: value.length < line.length - colon - 1,
      });
    else plain = false;
  }
  const read = fields.map(({ name, lines, cut }) => {
    if (cut) warn(warnings, `header ${name} longer than 64 KiB: read in part`);
    // A fold and the whitespace around it read as one space, as mail readers show them.
    const unfolded = lines
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .join(" ");
    return { name, value: decode8bit(name, unfolded, warnings) };
  });
  return { fields: read, bodyAt: fields.some((f) => f.cut) ? null : bodyAt };
}

/**
 * Raw 8-bit bytes in a header (RFC 6532 allows UTF-8; older mailers send their local charset):
 * UTF-8 when they are valid UTF-8, otherwise latin1, which keeps every byte.
 */
function decode8bit(name: string, latin1: string, warnings: string[]): string {
  if (!/[\x80-\xff]/.test(latin1)) return latin1;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(latin1, "latin1"));
  } catch {
    warn(warnings, `header ${name} has 8-bit bytes that are not UTF-8: decoded as latin1`);
    return latin1;
  }
}

function headerList(fields: Field[], warnings: string[]): [string, string][] {
  const list: [string, string][] = [];
  let budget = MAX_HEADER_BYTES;
  let cut = false;
  for (const { name, value } of fields) {
    if (list.length === MAX_HEADERS || budget <= name.length) {
      cut = true;
      break;
    }
    const decoded = decodeWords(value, warnings);
    const kept = cutUtf8(decoded, budget - name.length);
    list.push([name, kept]);
    budget -= name.length + Buffer.byteLength(kept);
    if (kept !== decoded) {
      cut = true;
      break;
    }
  }
  if (cut)
    warn(warnings, `headers cut to ${list.length} of ${fields.length} (at most ${MAX_HEADERS} headers, 64 KiB in all)`);
  return list;
}

/** Mailboxes, groups flattened; display names decoded after the split, as RFC 2047 §5 intends. */
function addresses(field: string, value: string | undefined, warnings: string[]): MailAddress[] {
  if (!value) return [];
  let parsed: { name?: string; address?: string }[];
  try {
    parsed = addressparser(value, { flatten: true });
  } catch (e) {
    // Not known to happen (it runs on at most 64 KiB, without recursion), but this side must not throw.
    warn(warnings, `unreadable ${field} header: ${String(e).slice(0, 100)}`);
    return [];
  }
  return parsed
    .map(({ name, address }) => ({
      name: decodeWords(name ?? "", warnings).trim() || null,
      address: address?.trim() || null,
    }))
    .filter((a) => a.name !== null || a.address !== null);
}

/** `<id@host>` tokens (RFC 5322 §3.6.4); bare `id@host` tokens get their brackets. */
function messageIds(value: string | undefined): string[] {
  if (!value) return [];
  return value.match(/<[^<>\s]+>/g) ?? (value.match(/[^\s<>,]+@[^\s<>,]+/g) ?? []).map((id) => `<${id}>`);
}

function parseDate(value: string | undefined, warnings: string[]): string | null {
  if (value === undefined) return null;
  // Comments such as "(PDT)" are allowed anywhere (RFC 5322 §3.2.2) but not by Date.parse.
  const t = Date.parse(value.replace(/\([^()]*\)/g, " "));
  if (Number.isNaN(t)) {
    warn(warnings, `unreadable Date header: ${JSON.stringify(value.slice(0, 80))}`);
    return null;
  }
  return new Date(t).toISOString();
}

// Encoded text

const ENCODED_WORD = /=\?([^?\s]+)\?([bq])\?([^?]*)\?=/gi;

/**
 * RFC 2047 encoded-words. Whitespace between two adjacent encoded-words is dropped (§6.2), and
 * the bytes of adjacent words in one charset are decoded together, because senders split
 * multi-byte characters across words (mikel-mail/bad_subject.eml). Not for ISO-2022 charsets:
 * each of their words ends back in ASCII (RFC 1468), and a decoder rightly refuses the escape
 * sequence that would join two.
 */
function decodeWords(value: string, warnings: string[]): string {
  if (!value.includes("=?")) return value;
  let out = "";
  let last = 0;
  let run: { charset: string; bytes: Buffer[] } | null = null;
  for (const m of value.matchAll(ENCODED_WORD)) {
    // RFC 2231 §5 lets a language follow the charset: =?utf-8*en?Q?…?=
    const charset = m[1]!.replace(/\*.*$/, "").toLowerCase();
    const gap = value.slice(last, m.index);
    const adjacent = run !== null && gap.trim() === "";
    if (run && !(adjacent && run.charset === charset && !charset.startsWith("iso-2022"))) {
      out += charsetDecoder(run.charset, warnings).decode(Buffer.concat(run.bytes));
      run = null;
    }
    if (!adjacent) out += gap;
    run ??= { charset, bytes: [] };
    run.bytes.push(m[2]!.toLowerCase() === "b" ? Buffer.from(m[3]!, "base64") : decodeQ(m[3]!));
    last = m.index + m[0].length;
  }
  if (run) out += charsetDecoder(run.charset, warnings).decode(Buffer.concat(run.bytes));
  return out + value.slice(last);
}

/** RFC 2047 §4.2: "_" is a space, "=XX" a byte. */
function decodeQ(text: string): Buffer {
  return Buffer.from(
    text.replace(/_/g, " ").replace(/=([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
    "latin1",
  );
}

const WINDOWS_CODE_PAGE = /^(?:x-)?(?:cp|win|windows)[-_]?(\d{3,4})$/i;

/**
 * A decoder for a MIME charset name, from the WHATWG Encoding Standard's table (what browsers
 * use), for headers and bodies alike. A name it does not know is read as latin1, which keeps every
 * byte, and the warning says so.
 */
export function charsetDecoder(charset: string, warnings: string[]): TextDecoder {
  for (const label of [charset, charset.replace(WINDOWS_CODE_PAGE, "windows-$1")]) {
    try {
      // Any label may be tried: the constructor throws for one it does not know.
      return new TextDecoder(label as Bun.Encoding);
    } catch {
      // not a label the table knows
    }
  }
  warn(warnings, `unknown charset ${JSON.stringify(charset.slice(0, 40))}: decoded as latin1`);
  return new TextDecoder("latin1");
}

/** At most `maxBytes` of UTF-8, cut between characters. */
export function cutUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text;
  const bytes = Buffer.from(text);
  if (bytes.length <= maxBytes) return text;
  // In stream mode the decoder holds back a character the cut split, instead of writing U+FFFD.
  return new TextDecoder().decode(bytes.subarray(0, Math.max(0, maxBytes)), { stream: true });
}

/** Once each, and not without end: a hostile message could otherwise fill the event with them. */
export function warn(warnings: string[], warning: string): void {
  if (warnings.length < MAX_WARNINGS && !warnings.includes(warning)) warnings.push(warning);
}

// A plain body, here

/** Bodies read here instead of in a worker: small enough to take well under a millisecond. */
const INLINE_MAX_BYTES = 64 * 1024;
const PLAIN_TYPE = /^text\/plain[ \t]*(?:;[ \t]*charset[ \t]*=[ \t]*(?:"(us-ascii|utf-8)"|(us-ascii|utf-8)))?[ \t]*$/i;
const PLAIN_ENCODING = /^(?:7bit|8bit)$/i;
const NON_ASCII = /[^\x00-\x7f]/;

/** How many bodies went which way (tests). */
export const parseCounts = { inline: 0, worker: 0 };

/**
 * The body of a message that is one text/plain part, US-ASCII or UTF-8, 7bit or 8bit, whose
 * header block is plain (readFields' `bodyAt`) and whose body is at most 64 KiB: its text is the
 * body with each CRLF as LF, which is what mailparser makes of it (parse.test.ts compares the
 * two on handmade messages and on every such message of the corpus). Read here, it costs no
 * round trip to the worker and no pass through mailparser's streams: most of the parse stage's
 * time for the small plain messages machines send. Anything else (MIME parts, another charset or
 * encoding, a disposition, bytes that are not what the charset says) is null: the worker's.
 */
function plainBody(fields: Field[], raw: Uint8Array, bodyAt: number | null, maxTextBytes: number): ParsedBody | null {
  if (bodyAt === null || raw.byteLength - bodyAt > INLINE_MAX_BYTES) return null;
  let type: string | undefined;
  let encoding: string | undefined;
  for (const f of fields) {
    if (!f.name.startsWith("content-")) continue;
    if (f.name === "content-type" && type === undefined) type = f.value.trim();
    else if (f.name === "content-transfer-encoding" && encoding === undefined) encoding = f.value.trim();
    else return null;
  }
  let charset = "us-ascii";
  if (type !== undefined) {
    const m = PLAIN_TYPE.exec(type);
    if (!m) return null;
    charset = (m[1] ?? m[2] ?? charset).toLowerCase();
  }
  if (encoding !== undefined && !PLAIN_ENCODING.test(encoding)) return null;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw.subarray(bodyAt));
  } catch {
    return null;
  }
  if (charset !== "utf-8" && NON_ASCII.test(text)) return null;
  const warnings: string[] = [];
  return {
    text: cappedText("text", text.replaceAll("\r\n", "\n"), maxTextBytes, warnings),
    html: null,
    attachments: [],
    warnings,
  };
}

/** `content` cut to `maxBytes` of UTF-8, with a warning when it was cut. */
export function cappedText(what: string, content: string, maxBytes: number, warnings: string[]): string {
  const kept = cutUtf8(content, maxBytes);
  if (kept !== content) warn(warnings, `${what} cut to ${maxBytes} bytes`);
  return kept;
}

// The body, in a worker

export interface BodyRequest {
  raw: Uint8Array;
  maxTextBytes: number;
}

/** What the worker sends back: everything but the blob references, which this side writes. */
export interface ParsedBody {
  text: string;
  html: string | null;
  attachments: (Omit<AttachmentRef, "sha256" | "size"> & { content: Uint8Array })[];
  warnings: string[];
}

export type BodyReply = WorkerReply<ParsedBody>;

const WORKER_URL = workerPath("mail/parse-worker.ts");

/** Several messages in one round trip to the worker; it answers each on its own. */
export interface BodyBatch {
  batch: BodyRequest[];
}

export type BatchItem = { result: ParsedBody } | { error: string };
export type BodyBatchReply = WorkerReply<BatchItem[]>;

/** What one batch may hold: small messages only share a round trip. */
const BATCH_MAX = 32;
const BATCH_MAX_BYTES = 512 * 1024;

interface Pending {
  request: BodyRequest;
  timeoutMs: number;
  /** Sent alone: its batch failed, and only a run of its own tells whose fault that was. */
  alone: boolean;
  resolve: (body: ParsedBody) => void;
  reject: (e: Error) => void;
}

/**
 * One worker (replaced after a crash, an exit or a timeout: src/core/worker-queue.ts). A message
 * that arrives while the worker is idle goes at once, on its own; the ones that arrive while it
 * parses wait and then go together, as one batch: one round trip between the threads instead of
 * one per message, which under load cost more than parsing a small message. A batch that fails
 * (a crash, an exit, a timeout) is sent again one message at a time, so a message that brings the
 * worker down still costs only itself.
 */
export class BodyParser {
  private readonly worker: WorkerQueue<BodyRequest | BodyBatch, ParsedBody | BatchItem[]>;
  private readonly pending: Pending[] = [];
  private sending = 0;
  private inFlight = 0;

  constructor(workerUrl: string = WORKER_URL) {
    this.worker = new WorkerQueue(workerUrl, { timedOut: (ms) => new Error(`no result after ${ms} ms`) });
  }

  /** Messages waiting or being parsed here. */
  get load(): number {
    return this.pending.length + this.inFlight;
  }

  parse(request: BodyRequest, timeoutMs: number): Promise<ParsedBody> {
    // A view is cloned with all of its underlying buffer: send the message's bytes only.
    const { raw, maxTextBytes } = request;
    const own = raw.byteLength === raw.buffer.byteLength ? raw : raw.slice();
    return new Promise((resolve, reject) => {
      this.pending.push({ request: { raw: own, maxTextBytes }, timeoutMs, alone: false, resolve, reject });
      if (this.sending === 0) this.send();
    });
  }

  private send(): void {
    const first = this.pending.shift();
    if (!first) return;
    const group = [first];
    let bytes = first.request.raw.byteLength;
    while (!first.alone && group.length < BATCH_MAX) {
      const next = this.pending[0];
      if (!next || next.alone || bytes + next.request.raw.byteLength > BATCH_MAX_BYTES) break;
      group.push(this.pending.shift()!);
      bytes += next.request.raw.byteLength;
    }
    this.sending++;
    this.inFlight += group.length;
    const done = () => {
      this.sending--;
      this.inFlight -= group.length;
      if (this.sending === 0) this.send();
    };
    if (group.length === 1) {
      this.worker.run(first.request, first.timeoutMs).then(
        (body) => (done(), first.resolve(body as ParsedBody)),
        (e: Error) => (done(), first.reject(e)),
      );
      return;
    }
    const timeoutMs = Math.max(...group.map((p) => p.timeoutMs));
    this.worker.run({ batch: group.map((p) => p.request) }, timeoutMs).then(
      (replies) => {
        const list = replies as BatchItem[];
        group.forEach((p, i) => {
          const r = list[i];
          if (r && "result" in r) p.resolve(r.result);
          else p.reject(new Error(r?.error ?? "no result in the batch's reply"));
        });
        done();
      },
      () => {
        // Whose fault it was is unknown: each goes again on its own, first in line.
        this.pending.unshift(...group.map((p) => ({ ...p, alone: true })));
        done();
      },
    );
  }
}

/**
 * One parser per core (at most 4): the job runner works on many messages at once, and a single
 * worker measured as the pipeline's bottleneck (about 600 messages/s on 2 cores). Each message
 * goes to the least busy one; a crash still costs only the message it was parsing.
 */
const parsers = Array.from({ length: Math.max(1, Math.min(4, availableParallelism())) }, () => new BodyParser());
const bodyParser = {
  parse: (request: BodyRequest, timeoutMs: number) =>
    parsers.reduce((a, b) => (b.load < a.load ? b : a)).parse(request, timeoutMs),
};
