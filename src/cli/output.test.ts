import { describe, expect, test } from "bun:test";
import type { CommandIO } from "./command.ts";
import { cell, Progress, renderTable, time } from "./output.ts";

describe("tables", () => {
  test("columns are padded to their widest cell; the last is not padded", () => {
    expect(
      renderTable(
        ["NAME", "URL"],
        [
          ["crm", "http://a"],
          ["billing", "http://bb"],
        ],
      ),
    ).toBe("NAME     URL\ncrm      http://a\nbilling  http://bb\n");
  });

  test("a cell shows nothing as '-', lists comma-joined, and long values cut short", () => {
    expect([cell(null), cell(undefined), cell(""), cell([]), cell(["a", "b"]), cell({ a: 1 }), cell(3)]).toEqual([
      "-",
      "-",
      "-",
      "-",
      "a,b",
      '{"a":1}',
      "3",
    ]);
    expect(cell("x".repeat(100), 10)).toBe(`${"x".repeat(9)}…`);
  });

  test("control characters from the wire cannot reach the terminal", () => {
    expect(cell("subject\u001b[31mred\r\nline")).toBe("subject?[31mred??line");
  });

  test("times are shown in UTC to the second", () => {
    expect(time("2026-11-21T14:02:11.043Z")).toBe("2026-11-21 14:02:11Z");
    expect(time(null)).toBe("-");
  });
});

describe("progress", () => {
  const io = (): CommandIO & { text: string } => {
    const o = { text: "", out() {}, err: (t: string) => void (o.text += t), env: {}, cwd: "/" };
    return o;
  };

  test("draws a bar in place and erases it when done", () => {
    const e = io();
    const p = new Progress(e, "listing", true);
    p.update(50, 100);
    expect(e.text).toContain("listing [############............] 50% 50/100");
    p.done();
    expect(e.text.endsWith("\r\u001b[2K")).toBe(true);
  });

  test("is silent when disabled (not a terminal, or --json)", () => {
    const e = io();
    const p = new Progress(e, "listing", false);
    p.update(1, 2);
    p.spin();
    p.done();
    expect(e.text).toBe("");
  });
});
