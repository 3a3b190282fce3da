import { Transform, type TransformCallback } from "node:stream";
import { Headers as MimeHeaders } from "@zone-eu/mailsplit";
import { type MailParserOptions, simpleParser } from "mailparser";
import { decodeFieldBytes, repairDelimiters } from "./mime-repair.ts";
import {
  type BatchItem,
  type BodyBatch,
  type BodyBatchReply,
  type BodyReply,
  type BodyRequest,
  cappedText,
  charsetDecoder,
  type ParsedBody,
  warn,
} from "./parse.ts";
import { sanitizeHtml } from "./sanitize.ts";

/**
 * The body of one message through mailparser: text, sanitized HTML and the attachments' bytes.
 * This module is the worker parse.ts supervises, so it may throw, crash or hang.
 */
async function parseBody({ raw, maxTextBytes }: BodyRequest): Promise<ParsedBody> {
  const warnings: string[] = [];
  const { bytes, repaired, unmatched } = repairDelimiters(raw);
  if (repaired > 0)
    warn(
      warnings,
      `${repaired} MIME delimiter line${repaired === 1 ? "" : "s"} with whitespace after the boundary: ` +
        `read as delimiter${repaired === 1 ? "" : "s"} (RFC 2046 §5.1.1)`,
    );
  for (const boundary of unmatched)
    warn(
      warnings,
      `multipart boundary ${JSON.stringify(boundary.slice(0, 80))} never appears on a delimiter line: that multipart is read without its parts`,
    );
  headerWarnings = warnings;
  const mail = await simpleParser(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
    keepCidLinks: true,
    skipImageLinks: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    // @types/mailparser calls this option a stream; mailparser calls it: `new Iconv(charset, …)`.
    Iconv: charsetDecoders(warnings) as unknown as MailParserOptions["Iconv"],
  });
  const capped = (what: string, content: string) => cappedText(what, content, maxTextBytes, warnings);
  return {
    text: capped("text", mail.text ?? ""),
    html: typeof mail.html === "string" ? sanitizeHtml(capped("html", mail.html)) : null,
    attachments: mail.attachments.map((a) => ({
      filename: a.filename ?? null,
      content_type: a.contentType,
      content_id: a.cid ?? null,
      // An image the HTML shows (multipart/related) without a disposition of its own is inline.
      disposition:
        a.contentDisposition?.toLowerCase() === "inline" || (!a.contentDisposition && a.related)
          ? "inline"
          : "attachment",
      content: a.content,
    })),
    warnings,
  };
}

/**
 * mailparser hands a body in any charset but UTF-8 and ASCII to `new Iconv(charset)` when that
 * option is set. This one decodes with the same WHATWG table as the headers, and a charset it does
 * not know becomes a warning, where mailparser's default would read it as UTF-8 without a word.
 */
function charsetDecoders(warnings: string[]) {
  return class extends Transform {
    private readonly decoder: TextDecoder;
    constructor(charset: string) {
      super();
      this.decoder = charsetDecoder(charset, warnings);
    }
    override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
      done(null, this.decoder.decode(chunk, { stream: true }));
    }
    override _flush(done: TransformCallback): void {
      done(null, this.decoder.decode());
    }
  };
}

/** The current message's warnings, for the header decoding below: the worker parses one message at a time. */
let headerWarnings: string[] = [];
/** mailsplit's decoding of a MIME part's header field, replaced: see decodeFieldBytes. */
const headersPrototype = MimeHeaders.prototype as unknown as { _decodeHeaderValue?: (field: string) => string };
if (typeof headersPrototype._decodeHeaderValue === "function") {
  headersPrototype._decodeHeaderValue = (field: string) => (field ? decodeFieldBytes(field, headerWarnings) : field);
}

declare const self: Worker;

/** One message, or a batch of them (parse.ts), each answered on its own. */
self.onmessage = async ({ data }: MessageEvent<(BodyRequest | BodyBatch) & { id: number }>) => {
  if ("batch" in data) {
    const items: BatchItem[] = [];
    for (const request of data.batch) {
      try {
        items.push({ result: await parseBody(request) });
      } catch (e) {
        items.push({ error: String(e).slice(0, 200) });
      }
    }
    self.postMessage({ id: data.id, result: items } satisfies BodyBatchReply);
    return;
  }
  let reply: BodyReply;
  try {
    reply = { id: data.id, result: await parseBody(data) };
  } catch (e) {
    reply = { id: data.id, error: String(e).slice(0, 200) };
  }
  self.postMessage(reply);
};
