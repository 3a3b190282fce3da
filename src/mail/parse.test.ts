/**
 * The MIME-parse stage against the corpus (../shared/corpus/email): every message parses, fully
 * and well-formed, and the edge cases its README lists come out as a reader would expect. Then the
 * containment: a worker that throws, overflows its stack, exits or loops costs one message its
 * body, never the process.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Glob } from "bun";
import { BlobStore } from "../store/blobs.ts";
import { BodyParser, type MailAddress, type ParsedMail, parseCounts, parseMail } from "./parse.ts";

const CORPUS = join(import.meta.dir, "..", "..", "..", "shared", "corpus", "email");
const HAVE_CORPUS = existsSync(CORPUS);
const corpusBytes = (file: string) => Bun.file(join(CORPUS, file)).bytes();
const files = HAVE_CORPUS ? [...new Glob("**/*.eml").scanSync(CORPUS)].sort() : [];

const root = mkdtempSync(join(tmpdir(), "agentowl-parse-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const blobs = new BlobStore(join(root, "blobs"));
const parse = async (file: string, opts: { timeoutMs?: number; maxTextBytes?: number } = {}) =>
  parseMail(await corpusBytes(file), { blobs, ...opts });
const message = (text: string) => new TextEncoder().encode(text.replace(/\n/g, "\r\n"));
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const addr = (name: string | null, address: string | null): MailAddress => ({ name, address });

const KEYS =
  "attachments cc date from headers html in_reply_to message_id parse_warnings references reply_to sender subject text to".split(
    " ",
  );
const MSG_ID = /^<[^<>\s]+>$/;

/** Everything about a result that does not match ParsedMail's promises; empty when it is well-formed. */
async function problems(m: ParsedMail): Promise<string[]> {
  const p: string[] = [];
  const check = (ok: boolean, what: string) => ok || p.push(what);
  const isAddress = (a: MailAddress | null) =>
    a !== null &&
    Object.keys(a).sort().join() === "address,name" &&
    (a.name !== null || a.address !== null) &&
    [a.name, a.address].every((v) => v === null || (v !== "" && v === v.trim()));
  check(Object.keys(m).sort().join() === KEYS.join(), `keys ${Object.keys(m)}`);
  check(m.message_id === null || MSG_ID.test(m.message_id), `message_id ${m.message_id}`);
  check(m.in_reply_to === null || MSG_ID.test(m.in_reply_to), `in_reply_to ${m.in_reply_to}`);
  check(
    m.references.every((r) => MSG_ID.test(r)),
    "references",
  );
  check(m.subject === null || typeof m.subject === "string", "subject");
  check(m.date === null || new Date(m.date).toISOString() === m.date, `date ${m.date}`);
  check(m.from === null || isAddress(m.from), `from ${JSON.stringify(m.from)}`);
  check(m.sender === null || isAddress(m.sender), "sender");
  for (const list of ["reply_to", "to", "cc"] as const)
    check(m[list].every(isAddress), `${list} ${JSON.stringify(m[list])}`);
  check(m.headers.length <= 500, "more than 500 headers");
  check(
    m.headers.every(([n, v]) => /^[!-9;-~]+$/.test(n) && n === n.toLowerCase() && typeof v === "string"),
    "header names",
  );
  check(
    m.headers.reduce((sum, [n, v]) => sum + n.length + Buffer.byteLength(v), 0) <= 64 * 1024,
    "headers over 64 KiB",
  );
  check(typeof m.text === "string" && Buffer.byteLength(m.text) <= 1024 * 1024, "text");
  check(
    m.html === null || (typeof m.html === "string" && !/<(script|style|iframe)|<[^>]*\son\w+\s*=/i.test(m.html)),
    "html",
  );
  for (const a of m.attachments) {
    check(
      Object.keys(a).sort().join() === "content_id,content_type,disposition,filename,sha256,size",
      `attachment keys ${Object.keys(a)}`,
    );
    check(
      typeof a.content_type === "string" && a.content_type !== "" && ["attachment", "inline"].includes(a.disposition),
      `attachment ${JSON.stringify(a)}`,
    );
    const stored = await blobs.get(a.sha256);
    check(stored !== null && stored.byteLength === a.size && sha256(stored) === a.sha256, `blob ${a.sha256}`);
  }
  check(
    m.parse_warnings.every((w) => typeof w === "string" && !w.startsWith("parser failed")),
    `warnings ${m.parse_warnings}`,
  );
  return p;
}

describe.skipIf(!HAVE_CORPUS)("the corpus", () => {
  test("holds the 112 messages its README lists", () => {
    expect(files.length).toBe(112);
  });

  test.each(files)("%s parses fully and well-formed", async (file) => {
    expect(await problems(await parse(file))).toEqual([]);
  });

  test("messages parsed all at once queue for the worker and come out as they do one by one", async () => {
    const some = files.filter((_, i) => i % 4 === 0);
    const summary = (m: ParsedMail) => [m.subject, m.text.length, m.attachments.map((a) => a.sha256)];
    const together = await Promise.all(some.map((f) => parse(f)));
    const oneByOne: ParsedMail[] = [];
    for (const f of some) oneByOne.push(await parse(f));
    expect(together.map(summary)).toEqual(oneByOne.map(summary));
  });
});

describe.skipIf(!HAVE_CORPUS)("edge cases from the corpus README", () => {
  test("encoded-words split mid-message are joined without the whitespace between them (RFC 2047 §6.2)", async () => {
    const m = await parse("mikel-mail/bad_subject.eml");
    expect(m.subject).toBe("MySurvey.com:  You have a survey waiting!  91123105");
    expect(m.from).toEqual(addr("MySurvey.com & Carol Adams", "carol@mysurvey.com"));
    expect(m.headers).toContainEqual(["subject", m.subject!]);
  });

  test("adjacent ISO-2022-JP encoded-words decode one by one", async () => {
    expect((await parse("mikel-mail/example14.eml")).subject).toBe("Re: TEST テストテスト");
  });

  test("KOI8-R and Shift_JIS bodies are decoded", async () => {
    const koi8 = await parse("mimekit/ukr-koi8r-tnef.eml");
    expect(koi8.text).toStartWith("шостий\n");
    expect(koi8.attachments).toEqual([
      expect.objectContaining({ filename: "winmail.dat", content_type: "application/ms-tnef", size: 9566 }),
    ]);
    const sjis = await parse("mikel-mail/japanese_shift_jis.eml");
    expect(sjis.text).toContain("あいうえお");
    expect(sjis.text).toContain("このメールはテスト用のメールです。");
  });

  test("bare LF line endings: the PDF attachment holds exactly the bytes the message encodes", async () => {
    const raw = await corpusBytes("mikel-mail/attachment_pdf_lf.eml");
    expect(raw.includes(13)).toBe(false);
    // Independently of mailparser: the base64 lines between the PDF part's headers and the boundary.
    const source = Buffer.from(raw).toString("latin1");
    const start = source.indexOf("\n\n", source.indexOf('filename="broken.pdf"')) + 2;
    const pdf = Buffer.from(source.slice(start, source.indexOf("\n--", start)).replace(/\s+/g, ""), "base64");
    expect(pdf.subarray(0, 5).toString()).toBe("%PDF-");

    const m = await parseMail(raw, { blobs });
    expect(m.subject).toBe("Another PDF with 🎉 Unicode chars in it 🍿");
    expect(m.attachments).toEqual([
      {
        filename: "broken.pdf",
        content_type: "application/pdf",
        size: pdf.length,
        sha256: sha256(pdf),
        content_id: null,
        disposition: "attachment",
      },
    ]);
    expect(await blobs.get(sha256(pdf))).toEqual(new Uint8Array(pdf));
  });

  test("RFC 2231 filenames, continued and charset-tagged, are decoded", async () => {
    const names = async (file: string) => (await parse(file)).attachments.map((a) => a.filename);
    expect(await names("mailparser/nodemailer.eml")).toContain("nyan cat ✔.gif");
    expect(await names("mikel-mail/attachment_with_quoted_filename.eml")).toEqual(["Eelanalüüsi päring.jpg"]);
    expect(await names("mikel-mail/japanese_attachment_long_name.eml")).toEqual([`${"かきくけこ".repeat(5)}.txt`]);
  });

  test("embedded images are inline attachments named by their Content-ID, and the HTML keeps cid: links to them", async () => {
    const m = await parse("stalwart-mail-parser/thirdparty-019.eml");
    const inline = m.attachments.find((a) => a.disposition === "inline")!;
    expect(inline.content_type).toBe("image/png");
    expect(m.html).toContain(`src="cid:${inline.content_id}"`);
  });

  test("an empty multipart leaves the part beside it as the body", async () => {
    const m = await parse("mimekit/empty-multipart.eml");
    expect(m.text).toContain("This part should be on the same level as the multipart/alternative and not a child.");
    expect(m.attachments).toEqual([]);
  });

  test("a Content-Type without a subtype keeps its bytes, as an attachment", async () => {
    const [a] = (await parse("mimekit/missing-subtype.eml")).attachments;
    expect(a).toMatchObject({ filename: "document.xml.gz", content_type: "application-x-gzip", size: 15 });
    expect(new TextDecoder().decode((await blobs.get(a!.sha256))!)).toBe("blah blah blah\n");
  });

  test("a nested message/rfc822 is kept whole as an attachment, and parses on its own, level by level", async () => {
    const outer = await parse("mime4j/base64encoded-rfc822message-nested.eml");
    expect(outer.attachments.map((a) => a.content_type)).toEqual(["message/rfc822"]);
    const middle = await parseMail((await blobs.get(outer.attachments[0]!.sha256))!, { blobs });
    expect(middle.subject).toBe("a simple rfc822 message encoded in a base64 body.");
    expect(middle.attachments.map((a) => a.content_type)).toEqual(["message/rfc822"]);
    const inner = await parseMail((await blobs.get(middle.attachments[0]!.sha256))!, { blobs });
    expect(inner.text.trim()).toBe("Text body");
  });

  test("raw 8-bit headers: UTF-8 where they are (RFC 6532), latin1 with a warning where not", async () => {
    const utf8 = await parse("mikel-mail/utf8_headers.eml");
    expect(utf8.from).toEqual(addr("Jöhn Doe", "jdöe@mächine.example"));
    expect(utf8.parse_warnings).toEqual([]);
    const latin1 = await parse("mikel-mail/invalid_subject_characters.eml");
    expect(latin1.subject).toStartWith("Formação FrenetikPolis");
    expect(latin1.parse_warnings).toContain("header subject has 8-bit bytes that are not UTF-8: decoded as latin1");
  });

  test("a charset no decoder knows is read as latin1, and the warning says so", async () => {
    const m = await parse("enmime/html-mime-bad-unknown-charset-inline.eml");
    expect(m.parse_warnings).toEqual(['unknown charset "charset=us-askey": decoded as latin1']);
    expect(m.html).toContain("Test of HTML section");
  });

  test("addresses: an empty group, an empty angle address, an @ in a display name, an encoded comma", async () => {
    expect((await parse("mikel-mail/empty_group_lists.eml")).to).toEqual([]);
    expect((await parse("mikel-mail/encoding_madness.eml")).reply_to).toEqual([addr("KLAUS- HÄNSCHEL", null)]);
    expect((await parse("mikel-mail/raw_email_with_at_display_name.eml")).to).toEqual([
      addr(null, "smith@gmail.com"),
      addr("Mikel@Lindsaar", "raasdnil@gmail.com"),
      addr(null, "tom@gmail.com"),
    ]);
    expect((await parse("mikel-mail/weird_to_header.eml")).to).toEqual([
      addr(null, "user-example@aol.com"),
      addr(null, "e-s-a-s-2200@app.ar.com"),
    ]);
    expect((await parse("spamscope/mail_test_18-address-commas.eml")).from).toEqual(
      addr("LastßlName, FirstName", "comma.name@example.com"),
    );
  });

  test("an mbox From_ line before the headers is skipped; an unreadable Date is null, with a warning", async () => {
    expect((await parse("mikel-mail/raw_email_with_binary_encoded.eml")).from).toEqual(
      addr("Mikel Lindsaar", "email_test@me.nowhere"),
    );
    const m = await parse("mime4j/obsolete.eml");
    expect(m.subject).toBe("The obsolete syntax allow spaces before the colon and also empty lines in folding.");
    expect(m.date).toBeNull();
    expect(m.parse_warnings).toEqual(['unreadable Date header: "Malformed Date."']);
  });

  test("the 1.1 MB pathological HTML message parses in bounded time, its text capped", async () => {
    const started = performance.now();
    const m = await parse("mailparser/outofmemory.eml");
    expect(performance.now() - started).toBeLessThan(5000);
    expect(m.subject).toBe("Cause out of memory error in the mailparser");
    expect(Buffer.byteLength(m.text)).toBeLessThanOrEqual(1024 * 1024);
    expect(m.parse_warnings).toContain("text cut to 1048576 bytes");
    const small = await parse("mailparser/outofmemory.eml", { maxTextBytes: 10_000 });
    expect(Buffer.byteLength(small.text)).toBeLessThanOrEqual(10_000);
    expect(Buffer.byteLength(small.text)).toBeGreaterThan(9_990);
  });

  test("stack-overflow.eml (crashed mailparser 3.7.1): its 135 KB To header is read in part, the rest in full", async () => {
    const m = await parse("mimekit/stack-overflow.eml");
    expect(m).toMatchObject({
      subject: "Message Subject",
      from: addr("test", "test@test.com"),
      message_id: "<aasfasdfasdfa@bb>",
    });
    expect(m.to[0]).toEqual(addr("test", "test@test.com"));
    expect(m.parse_warnings).toEqual(["header to longer than 64 KiB: read in part"]);
    expect(await problems(m)).toEqual([]);
    expect((await parse("mikel-mail/bad_subject.eml")).parse_warnings).toEqual([]);
  });

  test("stack-overflow.eml in a process of its own: nothing escapes as an uncaught exception, and the process ends by itself", () => {
    const eml = JSON.stringify(join(CORPUS, "mimekit/stack-overflow.eml"));
    const blobs = JSON.stringify(join(root, "child"));
    const script = `
      process.on("uncaughtException", (e) => { console.error("uncaught:", e); process.exit(70); });
      const { parseMail } = await import(${JSON.stringify(join(import.meta.dir, "parse.ts"))});
      const { BlobStore } = await import(${JSON.stringify(join(import.meta.dir, "..", "store", "blobs.ts"))});
      const m = await parseMail(await Bun.file(${eml}).bytes(), { blobs: new BlobStore(${blobs}) });
      console.log(JSON.stringify(m.subject));`;
    const run = spawnSync(process.execPath, ["-e", script], { timeout: 15_000, encoding: "utf8" });
    expect({ status: run.status, stdout: run.stdout.trim(), stderr: run.stderr }).toEqual({
      status: 0,
      stdout: '"Message Subject"',
      stderr: "",
    });
  });

  test("a body that takes too long gives headers only, with a warning; the next message parses fully", async () => {
    const m = await parse("mimekit/stack-overflow.eml", { timeoutMs: 1 });
    expect(m).toMatchObject({
      subject: "Message Subject",
      from: addr("test", "test@test.com"),
      text: "",
      html: null,
      attachments: [],
    });
    expect(m.parse_warnings).toContain("parser failed: no result after 1 ms; headers only");
    const next = await parse("mikel-mail/attachment_pdf_lf.eml");
    expect(next.parse_warnings).toEqual([]);
    expect(next.attachments).toHaveLength(1);
  });
});

describe("where mailparser 3.9.31 reads wrong (mime-repair.ts)", () => {
  const REPAIRED = (n: number) =>
    `${n} MIME delimiter line${n === 1 ? "" : "s"} with whitespace after the boundary: read as delimiter${n === 1 ? "" : "s"} (RFC 2046 §5.1.1)`;
  const part = (headers: string, body: string) => `${headers}\n\n${body}`;

  test(`delimiter lines with spaces or tabs after the boundary are delimiters (RFC 2046 §5.1.1): the parts and \
their attachments come out, with a warning`, async () => {
    for (const eol of ["\r\n", "\n"]) {
      const text = [
        "From: a@example.com",
        "Subject: padded",
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
        "preamble",
        "--outer \t",
        'Content-Type: multipart/alternative;\n\tboundary="inner"',
        "",
        "--inner\t",
        part("Content-Type: text/plain; charset=utf-8", "the text"),
        "--inner  ",
        part("Content-Type: text/html", "<p>the html</p>"),
        "--inner-- ",
        "--outer   ",
        part(
          'Content-Type: application/pdf; name="report.pdf"\nContent-Disposition: attachment; filename="report.pdf"\nContent-Transfer-Encoding: base64',
          Buffer.from("%PDF-1.4 fake").toString("base64"),
        ),
        "--outer--\t",
        "epilogue",
      ].join("\n");
      const m = await parseMail(new TextEncoder().encode(text.replace(/\n/g, eol)), { blobs });
      expect(m.text).toBe("the text");
      expect(m.html).toContain("the html");
      expect(m.attachments).toEqual([
        expect.objectContaining({
          filename: "report.pdf",
          content_type: "application/pdf",
          size: 13,
          disposition: "attachment",
        }),
      ]);
      expect(await blobs.get(m.attachments[0]!.sha256)).toEqual(new TextEncoder().encode("%PDF-1.4 fake"));
      expect(m.parse_warnings).toEqual([REPAIRED(6)]);
    }
  });

  test.skipIf(!HAVE_CORPUS)(
    "mimekit/multipart-digest.eml's digest (delimiters `--foo `) read as a message: both messages are parts, not text",
    async () => {
      // The file wraps the digest in a message/rfc822, which is kept whole as an attachment (and
      // its bytes are not touched); its body, the digest, is the message with padded delimiters.
      const raw = Buffer.from(await corpusBytes("mimekit/multipart-digest.eml"));
      const digest = raw.subarray(raw.indexOf("\n\n") + 2);
      expect(digest.toString()).toContain("\n--foo \n");
      const m = await parseMail(digest, { blobs });
      expect(m.subject).toBe("submsg");
      expect(m.text).not.toContain("--foo");
      expect(m.attachments.map((a) => a.content_type)).toEqual(["message/rfc822", "message/rfc822"]);
      const inner = await Promise.all(
        m.attachments.map(async (a) => (await parseMail((await blobs.get(a.sha256))!, { blobs })).subject),
      );
      expect(inner).toEqual(["m1", "m2"]);
      expect(m.parse_warnings).toEqual([REPAIRED(2)]);

      const whole = await parse("mimekit/multipart-digest.eml");
      expect(whole.attachments).toEqual([expect.objectContaining({ content_type: "message/rfc822", size: 330 })]);
      expect(whole.parse_warnings).toEqual([]);
    },
  );

  test.skipIf(!HAVE_CORPUS)(
    "mime4j/weird-boundary.eml: a boundary ending in spaces is matched with them, and the line one space short stays text",
    async () => {
      const m = await parse("mime4j/weird-boundary.eml");
      expect(m.text).toContain("The above line is similar to the boundary but miss a final space");
      expect(m.text).toStartWith("Text body\n--0123456789");
      expect(m.parse_warnings).toEqual([]);
    },
  );

  test.skipIf(!HAVE_CORPUS)(
    "a multipart whose boundary never appears says so (flanker/false-multipart.eml, mime4j/missing-inner-boundary.eml)",
    async () => {
      expect((await parse("flanker/false-multipart.eml")).parse_warnings).toEqual([
        'multipart boundary "9c1a8544d562472896bc53f5da3057c0" never appears on a delimiter line: that multipart is read without its parts',
      ]);
      expect((await parse("mime4j/missing-inner-boundary.eml")).parse_warnings).toContain(
        'multipart boundary "inner-boundary" never appears on a delimiter line: that multipart is read without its parts',
      );
    },
  );

  test.skipIf(!HAVE_CORPUS)(
    "a UTF-8 name= cut mid-character (flanker/russian-attachment-yahoo.eml) is UTF-8, not latin1, with a warning",
    async () => {
      const m = await parse("flanker/russian-attachment-yahoo.eml");
      expect(m.attachments.map((a) => a.filename)).toEqual([
        "Картинка с очень, очень длинным предлинным именем преименем таким чт\ufffd",
      ]);
      expect(m.parse_warnings.toSorted()).toEqual([
        "MIME part header content-disposition is UTF-8 with bytes that are not: those read as U+FFFD",
        "MIME part header content-type is UTF-8 with bytes that are not: those read as U+FFFD",
      ]);
      // Valid raw UTF-8 names, quoted or not, read as they were before, without a warning.
      for (const [file, name] of [
        ["enmime/mime-bad-8bit-filename.eml", "管理.doc"],
        ["mikel-mail/attachment_nonascii_filename.eml", "ciële.txt"],
      ] as const) {
        const other = await parse(file);
        expect(other.attachments.map((a) => a.filename)).toContain(name);
        expect(other.parse_warnings).toEqual([]);
      }
    },
  );

  test("raw 8-bit name= parameters: UTF-8 beside a stray byte, a real U+FFFD, and latin1 only where nothing is UTF-8", async () => {
    const withName = (disposition: Buffer) =>
      Buffer.concat([
        Buffer.from(
          'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
            "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
            "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; ",
        ),
        disposition,
        Buffer.from("\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n"),
      ]);
    const cases: [string, Buffer, string, string[]][] = [
      [
        "UTF-8 and a stray byte in another parameter",
        Buffer.concat([Buffer.from('filename="Отчёт.pdf"; x-note="'), Buffer.from([0xff]), Buffer.from('"')]),
        "Отчёт.pdf",
        ["MIME part header content-disposition is UTF-8 with bytes that are not: those read as U+FFFD"],
      ],
      ["a real U+FFFD in a UTF-8 name", Buffer.from('filename="a\ufffdb-Отчёт.pdf"'), "a\ufffdb-Отчёт.pdf", []],
      [
        "latin1 bytes, no UTF-8 at all",
        Buffer.from('filename="ci\xe9le.txt"', "latin1"),
        "ciéle.txt",
        ["MIME part header content-disposition has 8-bit bytes that are not UTF-8: decoded as latin1"],
      ],
    ];
    for (const [what, disposition, filename, warnings] of cases) {
      const m = await parseMail(withName(disposition), { blobs });
      expect(
        m.attachments.map((a) => a.filename),
        what,
      ).toEqual([filename]);
      expect(m.parse_warnings, what).toEqual(warnings);
    }
  });
});

describe("the header block", () => {
  test("at most 500 headers and 64 KiB of them, with a warning when cut", async () => {
    const many = await parseMail(
      message(`${Array.from({ length: 600 }, (_, i) => `X-N: ${i}`).join("\n")}\nSubject: late\n\nbody\n`),
      { blobs },
    );
    expect(many.headers).toHaveLength(500);
    expect(many.subject).toBe("late");
    expect(many.parse_warnings).toEqual(["headers cut to 500 of 601 (at most 500 headers, 64 KiB in all)"]);

    const big = await parseMail(
      message(`X-A: ${"a".repeat(40_000)}\nX-B: ${"ü".repeat(20_000)}\nSubject: s\n\nbody\n`),
      { blobs },
    );
    expect(big.headers.map(([n]) => n)).toEqual(["x-a", "x-b"]);
    expect(big.headers.reduce((sum, [n, v]) => sum + n.length + Buffer.byteLength(v), 0)).toBeLessThanOrEqual(
      64 * 1024,
    );
    expect(big.headers[1]![1]).toMatch(/^ü+$/);
    expect(big.parse_warnings).toEqual(["headers cut to 2 of 3 (at most 500 headers, 64 KiB in all)"]);
  });

  test("a header block with no end is read only so far, and quickly", async () => {
    const flood = message(`Subject: flood\n${"X-Junk: 0123456789abcdef\n".repeat(200_000)}`);
    const started = performance.now();
    const m = await parseMail(flood, { blobs });
    expect(performance.now() - started).toBeLessThan(3000);
    expect(m.subject).toBe("flood");
    expect(m.parse_warnings).toContain("header block longer than 1 MiB: read in part");
  });

  test("folded headers unfold to single spaces; ids keep their angle brackets", async () => {
    const m = await parseMail(
      message(
        "Subject: a\n  folded\n\tsubject\nMessage-ID: <1@x>\nIn-Reply-To: <0@x>\nReferences: <a@x>\n <0@x>\n\nbody\n",
      ),
      { blobs },
    );
    expect(m).toMatchObject({
      subject: "a folded subject",
      message_id: "<1@x>",
      in_reply_to: "<0@x>",
      references: ["<a@x>", "<0@x>"],
      text: "body\n",
    });
  });
});

describe("a worker that fails", () => {
  // A stand-in for mailparser going wrong in each way a worker can: it reads its orders from the message.
  const fixture = join(root, "failing-worker.js");
  writeFileSync(
    fixture,
    `const obey = (raw) => {
      const order = new TextDecoder().decode(raw);
      if (order === "loop") for (;;);
      return { text: order, html: null, attachments: [], warnings: [] };
    };
    self.onmessage = ({ data }) => {
      if (data.batch)
        return self.postMessage({
          id: data.id,
          result: data.batch.map((r) => ({ result: { ...obey(r.raw), warnings: ["in a batch of " + data.batch.length] } })),
        });
      const order = new TextDecoder().decode(data.raw);
      if (order === "throw") setTimeout(() => { throw new TypeError("thrown from a timer"); });
      else if (order === "overflow") setTimeout(() => { const f = (n) => f(n + 1) + 1; f(0); });
      else if (order === "reject") Promise.reject(new Error("nobody listens"));
      else if (order === "exit") process.exit(3);
      else if (order === "loop") for (;;);
      else self.postMessage({ id: data.id, result: { text: order, html: null, attachments: [], warnings: [] } });
    };`,
  );
  const parser = new BodyParser(fixture);
  const ask = (order: string, timeoutMs = 10_000) =>
    parser.parse({ raw: new TextEncoder().encode(order), maxTextBytes: 1000 }, timeoutMs);

  test.each([
    ["throw", /^worker crashed: TypeError: thrown from a timer$/],
    ["overflow", /^worker crashed: RangeError: Maximum call stack size exceeded/],
    ["reject", /^worker crashed: error: nobody listens$/],
    ["exit", /^worker exited \(code 3\)$/],
  ])("%s: that parse fails with the reason, and the next one gets a fresh worker", async (order, reason) => {
    await expect(ask(order)).rejects.toThrow(reason);
    expect((await ask("fine")).text).toBe("fine");
  });

  test("messages that arrive while the worker parses go together in one round trip", async () => {
    const bodies = await Promise.all([ask("first"), ask("second"), ask("third")]);
    expect(bodies.map((b) => [b.text, b.warnings])).toEqual([
      ["first", []],
      ["second", ["in a batch of 2"]],
      ["third", ["in a batch of 2"]],
    ]);
  });

  test("a batch that times out is parsed again one message at a time: only the looping message fails", async () => {
    const queued = [ask("first"), ask("second", 300), ask("loop", 300), ask("third", 300)];
    await expect(queued[2]!).rejects.toThrow("no result after 300 ms");
    expect((await Promise.all([queued[0]!, queued[1]!, queued[3]!])).map((b) => [b.text, b.warnings])).toEqual([
      ["first", []],
      ["second", []],
      ["third", []],
    ]);
  });

  test("a loop that never ends is stopped at the timeout; messages queued behind it go on", async () => {
    const queued = [ask("loop", 200), ask("after 1"), ask("after 2")];
    await expect(queued[0]!).rejects.toThrow("no result after 200 ms");
    expect((await Promise.all(queued.slice(1))).map((b) => b.text)).toEqual(["after 1", "after 2"]);
  });
});

describe("a plain body, read without the worker", () => {
  // Each message both ways: inline (where it qualifies) and through mailparser in the worker.
  const bothWays = async (raw: Uint8Array, opts: { maxTextBytes?: number } = {}) => {
    const before = parseCounts.inline;
    const inline = await parseMail(raw, { blobs, ...opts });
    const went = parseCounts.inline - before;
    const worker = await parseMail(raw, { blobs, ...opts, inline: false });
    return { inline, worker, wentInline: went === 1 };
  };
  const bytes = (text: string) => Buffer.from(text, "utf8");
  const big = "x".repeat(70 * 1024);
  const cases: [name: string, raw: Uint8Array, inline: boolean][] = [
    ["CRLF lines", bytes("From: a@b.example\r\nSubject: x\r\n\r\nline one\r\nline two\r\n"), true],
    ["no final line end", bytes("From: a@b.example\r\n\r\nline one\r\nline two"), true],
    ["LF only", bytes("From: a@b.example\nSubject: x\n\nline one\nline two\n"), true],
    ["blank lines at the end", bytes("From: a@b.example\r\n\r\nbody\r\n\r\n\r\n"), true],
    ["empty body", bytes("From: a@b.example\r\n\r\n"), true],
    [
      "spaces, tabs, a bare CR, NUL, dots",
      bytes("From: a@b.example\r\n\r\n  x  \r\n\ty\ra\u0000b\r\n..z\r\n.\r\n"),
      true,
    ],
    [
      "UTF-8, 8bit",
      bytes(
        "From: a@b.example\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nh\u00e9llo \u2603\r\n",
      ),
      true,
    ],
    [
      "quoted charset, 7bit, folded type",
      bytes(
        'From: a@b.example\r\nContent-Type: text/plain;\r\n charset="US-ASCII"\r\nContent-Transfer-Encoding: 7BIT\r\n\r\nhi\r\n',
      ),
      true,
    ],
    ["text/plain without a charset", bytes("From: a@b.example\r\nContent-Type: TEXT/PLAIN\r\n\r\nhi\r\n"), true],
    ["64 KiB of body", bytes(`From: a@b.example\r\n\r\n${"y".repeat(64 * 1024 - 2)}\r\n`), true],
    ["no empty line after the headers", bytes("From: a@b.example\r\nSubject: x\r\n"), false],
    ["a line that is no field", bytes("From: a@b.example\r\nnot a field\r\n\r\nbody\r\n"), false],
    ["an mbox From line", bytes("From someone Mon Jan  1 00:00:00 2024\r\nFrom: a@b.example\r\n\r\nbody\r\n"), false],
    ["a BOM", bytes("\ufeffFrom: a@b.example\r\n\r\nbody\r\n"), false],
    [
      "format=flowed",
      bytes("From: a@b.example\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nsoft \r\nbreak\r\n"),
      false,
    ],
    [
      "quoted-printable",
      bytes("From: a@b.example\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo=\r\n\r\n"),
      false,
    ],
    ["base64", bytes("From: a@b.example\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"), false],
    [
      "latin1",
      Buffer.concat([
        bytes("From: a@b.example\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nh"),
        Buffer.from([0xe9]),
        bytes("llo\r\n"),
      ]),
      false,
    ],
    [
      "bytes that are not UTF-8",
      Buffer.concat([
        bytes("From: a@b.example\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nh"),
        Buffer.from([0xe9]),
        bytes("llo\r\n"),
      ]),
      false,
    ],
    ["8-bit text without a charset", bytes("From: a@b.example\r\n\r\nh\u00e9llo\r\n"), false],
    [
      "a disposition",
      bytes("From: a@b.example\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nhi\r\n"),
      false,
    ],
    [
      "two content types",
      bytes("From: a@b.example\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n"),
      false,
    ],
    ["HTML", bytes("From: a@b.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n"), false],
    [
      "multipart",
      bytes('From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nhi\r\n--b--\r\n'),
      false,
    ],
    ["over 64 KiB", bytes(`From: a@b.example\r\n\r\n${big}\r\n`), false],
  ];
  for (const [name, raw, inline] of cases)
    test(`${name}: ${inline ? "read here" : "left to the worker"}, the same result either way`, async () => {
      const { inline: a, worker: b, wentInline } = await bothWays(raw);
      expect(wentInline).toBe(inline);
      expect(a).toEqual(b);
    });

  test("a text over maxTextBytes is cut, with the same warning either way", async () => {
    const {
      inline: a,
      worker: b,
      wentInline,
    } = await bothWays(bytes(`From: a@b.example\r\n\r\n${"\u00e9".repeat(100)}\r\n`), {
      maxTextBytes: 51,
    });
    expect(wentInline).toBe(false); // 8-bit without a charset
    const {
      inline: c,
      worker: d,
      wentInline: w2,
    } = await bothWays(
      bytes(`From: a@b.example\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${"\u00e9".repeat(100)}\r\n`),
      { maxTextBytes: 51 },
    );
    expect(w2).toBe(true);
    expect(c).toEqual(d);
    expect(c.text).toBe("\u00e9".repeat(25));
    expect(c.parse_warnings).toContain("text cut to 51 bytes");
    expect(a).toEqual(b);
  });

  test.skipIf(!HAVE_CORPUS)("every corpus message read here reads the same through mailparser", async () => {
    let here = 0;
    for (const file of files) {
      const { inline, worker, wentInline } = await bothWays(await corpusBytes(file));
      if (!wentInline) continue;
      here++;
      expect({ file, parsed: inline }).toEqual({ file, parsed: worker });
    }
    console.log(`${here} of ${files.length} corpus messages read here`);
    expect(here).toBeGreaterThan(0);
  });
});
