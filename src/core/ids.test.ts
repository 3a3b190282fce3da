import { describe, expect, test } from "bun:test";
import { idTime, isId, newId } from "./ids.ts";

describe("ids", () => {
  test("carry their prefix and a ULID", () => {
    const id = newId("evt");
    expect(id).toMatch(/^evt_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(isId(id, "evt")).toBe(true);
    expect(isId(id, "job")).toBe(false);
    expect(isId("evt_not-a-ulid", "evt")).toBe(false);
  });

  test("sort in creation order, even within one millisecond", () => {
    const t = Date.now();
    const ids = Array.from({ length: 1000 }, () => newId("job", t));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(1000);
    expect(newId("job", t + 1) > ids.at(-1)!).toBe(true);
  });
});

describe("id time", () => {
  test("an id carries its creation time, like a ULID", () => {
    const t = Date.UTC(2026, 10, 21, 14, 2, 11, 43);
    expect(idTime(newId("evt", t))).toBe(t);
  });
});
