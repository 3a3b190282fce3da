import { expect, test } from "bun:test";
import { jsonOnce } from "./json-once.ts";

test("jsonOnce gives JSON.stringify's text, the same string for the same object, another for an equal copy", () => {
  const envelope = { id: "evt_1", data: { n: 1, tags: ["a"] } };
  const text = jsonOnce(envelope);
  expect(text).toBe(JSON.stringify(envelope));
  expect(jsonOnce(envelope)).toBe(text);
  const copy = structuredClone(envelope);
  expect(jsonOnce(copy)).toBe(text);
});
