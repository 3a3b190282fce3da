import { expect, test } from "bun:test";
import { postBatcher } from "./post-batch.ts";

test("items posted in one turn of the event loop go as one array, in order; the next turn's as another", async () => {
  const posted: number[][] = [];
  const post = postBatcher<number>((items) => posted.push(items));
  post(1);
  post(2);
  await Promise.resolve(); // microtasks are still the same turn
  post(3);
  expect(posted).toEqual([]);
  await new Promise((r) => setImmediate(r));
  expect(posted).toEqual([[1, 2, 3]]);
  post(4);
  await new Promise((r) => setImmediate(r));
  expect(posted).toEqual([[1, 2, 3], [4]]);
});
