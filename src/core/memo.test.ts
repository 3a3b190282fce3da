import { expect, test } from "bun:test";
import { memoByText } from "./memo.ts";

test("memoByText makes each text's value once, keeps at most its bound, and remembers nothing that threw", () => {
  let made = 0;
  const upper = memoByText(3, (k) => {
    made++;
    if (k === "bad") throw new Error("no");
    return k === "none" ? undefined : k.toUpperCase();
  });
  expect(upper("a")).toBe("A");
  expect(upper("a")).toBe("A");
  expect(made).toBe(1);
  // undefined is a value like any other: made once.
  expect(upper("none")).toBeUndefined();
  expect(upper("none")).toBeUndefined();
  expect(made).toBe(2);
  expect(() => upper("bad")).toThrow("no");
  expect(() => upper("bad")).toThrow("no");
  expect(made).toBe(4);
  // Full (a, none, b): the next new text starts the table over, so "a" is made again.
  upper("b");
  upper("c");
  expect(made).toBe(6);
  upper("a");
  expect(made).toBe(7);
});
