import { AppError } from "../errors/index.ts";

/**
 * Request bodies, read and parsed with every bound checked before the work it guards (guarantee 9 (docs/guarantees.md)):
 * the size while the bytes come off the socket, the nesting before anything recursive runs.
 * The HTTP ingress and the /v1 API read their bodies through here.
 */

/** Arrays and objects inside each other: deeper than this is refused before JSON.parse runs. */
export const MAX_JSON_DEPTH = 64;

/**
 * How long a body may take to arrive, whole. The server's idle timeout (10 s) only bounds the
 * pause between two packets: a client sending a byte every few seconds would otherwise hold its
 * request, and the memory of what it sent so far, for as long as it likes.
 */
export const BODY_TIMEOUT_MS = 30_000;

/**
 * The body's bytes, at most `limit` of them: 413 beyond, read no further; 408 when it has not all
 * arrived within `timeoutMs`. A declared Content-Length over the limit is refused before a byte is
 * read; a chunked body is counted as it comes and dropped at the limit.
 */
export function readBody(request: Request, limit: number, timeoutMs = BODY_TIMEOUT_MS): Promise<Uint8Array> {
  const length = request.headers.get("content-length");
  const declared = Number(length);
  if (declared > limit) return Promise.reject(new AppError("too_large", `the body may have at most ${limit} bytes`));
  // A declared length within the limit: read it whole (the server holds no more than declared).
  // Decided before touching request.body, which makes a stream the whole read does not need.
  if (length !== null && Number.isInteger(declared)) return within(wholeBody(request), timeoutMs, nothingToStop);
  const body = request.body;
  if (!body) return Promise.resolve(new Uint8Array(0));
  const reader = body.getReader();
  // Stop reading a late body, so its rest is neither waited for nor kept.
  return within(chunked(reader, limit), timeoutMs, () => void reader.cancel().catch(() => {}));
}

/** `read`, or a 408 once `timeoutMs` passed (then `late` runs): one timer, cleared when the read settles. */
function within<T>(read: Promise<T>, timeoutMs: number, late: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      late();
      reject(new AppError("timeout", `the body did not arrive within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    read.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

const nothingToStop = () => {};
const asBytes = (buffer: ArrayBuffer) => new Uint8Array(buffer);
const endedEarly = (e: unknown) =>
  Promise.reject(new AppError("invalid_input", "the body ended before its declared length", { cause: e }));

/** A declared length's bytes (a chain of the runtime's promise, not an async function's: this is every webhook's path). */
function wholeBody(request: Request): Promise<Uint8Array> {
  try {
    return request.arrayBuffer().then(asBytes, endedEarly);
  } catch (e) {
    return endedEarly(e);
  }
}

/** Chunked: count as it comes, and stop at the limit. */
async function chunked(
  reader: {
    read(): Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }>;
    cancel(): Promise<void>;
  },
  limit: number,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        void reader.cancel().catch(() => {});
        throw new AppError("too_large", `the body may have at most ${limit} bytes`);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw new AppError("invalid_input", "the body ended before its declared length", { cause: e });
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}

/**
 * Whether JSON text nests arrays and objects deeper than `max`: one pass, no recursion, no
 * allocation, so a 100,000-deep document costs a scan and never reaches JSON.parse or a validator.
 * Brackets inside strings do not count; the text need not be valid JSON.
 */
export function jsonNestsDeeper(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 text, or a 400: a body that is not UTF-8 is not JSON or YAML either. */
export function utf8(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new AppError("invalid_input", "the body is not valid UTF-8");
  }
}

/** JSON text → value: 422 when it nests deeper than `maxDepth` (checked first), 400 when it does not parse. */
export function parseJsonBounded(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  if (jsonNestsDeeper(text, maxDepth)) {
    throw new AppError("invalid_input", `the body nests arrays and objects more than ${maxDepth} deep`, {
      errors: [{ field: "/", message: `nested more than ${maxDepth} levels deep` }],
    });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError("invalid_input", "the body is not valid JSON");
  }
}
