import { describe, expect, test } from "bun:test";
import { decodeFieldBytes, MAX_DELIMITER_LINE, multipartBoundary, repairDelimiters } from "./mime-repair.ts";

const bytes = (text: string) => Buffer.from(text, "latin1");
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const MULTIPART = 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n';

describe("repairDelimiters", () => {
  test("only the padding after a declared boundary goes; every other byte, line ending included, stays", () => {
    const raw = bytes(
      `${MULTIPART}--b \t\r\nContent-Type: text/plain\r\n\r\ntext --b  \r\n--b\n\nx\n--bb \r\n--b-- \r\nepilogue --b \r\n`,
    );
    const { bytes: out, repaired, unmatched } = repairDelimiters(raw);
    expect(text(out)).toBe(
      `${MULTIPART}--b\r\nContent-Type: text/plain\r\n\r\ntext --b  \r\n--b\n\nx\n--bb \r\n--b--\r\nepilogue --b \r\n`,
    );
    expect(repaired).toBe(2);
    expect(unmatched).toEqual([]);
  });

  test("nothing to repair: the same bytes back, not a copy", () => {
    const raw = bytes(`${MULTIPART}--b\r\n\r\nx\r\n--b--\r\n`);
    expect(repairDelimiters(raw).bytes).toBe(raw);
  });

  test("a boundary is declared only by a Content-Type of a header block: not by one quoted in a body or inside an attached message", () => {
    const quoted = bytes('Content-Type: text/plain\r\n\r\nContent-Type: multipart/mixed; boundary="q"\r\n\r\n--q \r\n');
    expect(repairDelimiters(quoted)).toEqual({ bytes: quoted, repaired: 0, unmatched: [] });
    const attached = bytes(
      `${MULTIPART}--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary="inner"\r\n\r\n--inner \r\nx\r\n--inner-- \r\n--b--\r\n`,
    );
    expect(repairDelimiters(attached).repaired).toBe(0);
  });

  test("a multipart's boundary that never appears is reported; a non-multipart boundary parameter is not a boundary", () => {
    expect(repairDelimiters(bytes(`${MULTIPART}just text\r\n`)).unmatched).toEqual(["b"]);
    expect(repairDelimiters(bytes('Content-Type: text/html; boundary="x"\r\n\r\n--x \r\n')).repaired).toBe(0);
  });

  test("a line longer than a delimiter can be is not looked at", () => {
    const long = `--b${" ".repeat(MAX_DELIMITER_LINE)}\r\n`;
    expect(repairDelimiters(bytes(`${MULTIPART}${long}`)).repaired).toBe(0);
  });

  test("linear: 20 MB of candidate delimiter lines and 20 MB of one long line each take well under a second", () => {
    for (const body of [`--b \r\n`.repeat(3_500_000), `--${"-".repeat(20_000_000)}`, "\n".repeat(20_000_000)]) {
      const raw = bytes(MULTIPART + body);
      const started = performance.now();
      repairDelimiters(raw);
      expect(performance.now() - started).toBeLessThan(2000);
    }
  });

  test("boundaries: quoted with escapes, bare, folded onto the next line, or absent", () => {
    expect(multipartBoundary(' multipart/mixed; boundary="a\\"b c"')).toBe('a"b c');
    expect(multipartBoundary("Multipart/Alternative;boundary=xyz;charset=x")).toBe("xyz");
    expect(
      repairDelimiters(bytes('Content-Type: multipart/mixed;\r\n\tboundary="f"\r\n\r\n--f \r\n\r\n--f--\r\n')).repaired,
    ).toBe(1);
    expect(multipartBoundary("text/plain; boundary=x")).toBeNull();
    expect(multipartBoundary("multipart/mixed")).toBeNull();
  });
});

describe("decodeFieldBytes", () => {
  test("ASCII and valid UTF-8 as they are; mixed as UTF-8 with U+FFFD; no UTF-8 at all as latin1; each degraded read warned", () => {
    const warnings: string[] = [];
    expect(decodeFieldBytes("Content-Type: text/plain", warnings)).toBe("Content-Type: text/plain");
    expect(decodeFieldBytes(text(Buffer.from('Content-Type: x; name="Отчёт\ufffd"')), warnings)).toBe(
      'Content-Type: x; name="Отчёт\ufffd"',
    );
    expect(warnings).toEqual([]);
    expect(
      decodeFieldBytes(
        text(Buffer.concat([Buffer.from('Content-Disposition: a; filename="Отчёт'), Buffer.from([0xd1, 0x22])])),
        warnings,
      ),
    ).toBe('Content-Disposition: a; filename="Отчёт\ufffd"');
    expect(decodeFieldBytes("Content-Type: x; name=ci\xeble", warnings)).toBe("Content-Type: x; name=ci\xeble");
    expect(warnings).toEqual([
      "MIME part header content-disposition is UTF-8 with bytes that are not: those read as U+FFFD",
      "MIME part header content-type has 8-bit bytes that are not UTF-8: decoded as latin1",
    ]);
  });
});
