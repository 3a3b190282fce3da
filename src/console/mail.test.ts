import { describe, expect, test } from "bun:test";
import { contentDisposition } from "./mail.ts";

/** What RFC 5987's ext-value may hold after `UTF-8''`: attr-char and percent-escapes only. */
const EXT_VALUE = /^[A-Za-z0-9!#$&+\-.^_`|~]*(%[0-9A-F]{2}[A-Za-z0-9!#$&+\-.^_`|~]*)*$/;

function parts(header: string) {
  const m = /^attachment; filename="([^"\\]*)"; filename\*=UTF-8''(.*)$/.exec(header);
  if (!m) throw new Error(`not the expected form: ${header}`);
  return { fallback: m[1]!, encoded: m[2]! };
}

describe("contentDisposition", () => {
  test.each([
    `"><img src=x onerror=alert(1)>.txt`,
    'a"; filename="evil.html',
    "line\r\nSet-Cookie: x=1.txt",
    "Rechnung März (2026)*'.pdf",
    "../../etc/passwd",
    "..\\windows\\system32",
    "报告.docx",
    "\ud800lone surrogate.txt",
    "",
  ])("a name from outside never reaches the header's syntax: %j", (name) => {
    const header = contentDisposition(name);
    expect(header).not.toMatch(/[\r\n\u0000-\u001f\u007f]/);
    const { fallback, encoded } = parts(header);
    expect(fallback).toMatch(/^[A-Za-z0-9._-]+$/);
    expect(encoded).toMatch(EXT_VALUE);
    // The exact name comes back from the encoded form, minus control characters and path separators.
    const decoded = decodeURIComponent(encoded);
    expect(decoded).not.toMatch(/[/\\\u0000-\u001f]/);
    if (name === "报告.docx") expect(decoded).toBe(name);
    if (name === "") expect(decoded).toBe("attachment");
  });

  test("an ordinary name is itself in both forms", () => {
    expect(contentDisposition("invoice-42.pdf")).toBe(
      `attachment; filename="invoice-42.pdf"; filename*=UTF-8''invoice-42.pdf`,
    );
  });
});
