import { describe, expect, test } from "bun:test";
import { idTime, isId, newId, parseSeqId, seqId } from "./ids.ts";

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

describe("sequence ids", () => {
  test("render an integer key as a fixed-width, prefixed id that sorts like the number", () => {
    const ids = [1, 2, 31, 32, 1000, 2 ** 40].map((n) => seqId("job", n));
    expect(ids[0]).toBe("job_0000000000001");
    expect([...ids].sort()).toEqual(ids);
    expect(ids.map((id) => parseSeqId("job", id))).toEqual([1, 2, 31, 32, 1000, 2 ** 40]);
  });

  test("anything else is not one", () => {
    for (const bad of ["job_1", "evt_0000000000001", "job_000000000000U", "job_0000000000000", "job_00000000000001"]) {
      expect(parseSeqId("job", bad)).toBeNull();
    }
  });
});
