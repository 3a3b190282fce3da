import { describe, expect, test } from "bun:test";
import { idFloor, idTime, isId, newId, parseSeqId, seqId } from "./ids.ts";

describe("ids", () => {
  test("carry their prefix and a ULID", () => {
    const id = newId("evt");
    expect(id).toMatch(/^evt_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(isId(id, "evt")).toBe(true);
    expect(isId(id, "job")).toBe(false);
    expect(isId("evt_not-a-ulid", "evt")).toBe(false);
  });

  test("are the 128 bits of a UUIDv7 in Crockford base32, prefix first, for every prefix", () => {
    const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (const prefix of ["evt", "dlv", "rt", "tc"] as const) {
      const id = newId(prefix, Date.UTC(2026, 11, 7, 23, 50, 1, 2));
      expect(id.startsWith(`${prefix}_`)).toBe(true);
      const text = id.slice(prefix.length + 1);
      expect(text).toHaveLength(26);
      let bits = "";
      for (const c of text) bits += CROCKFORD.indexOf(c).toString(2).padStart(5, "0");
      expect(bits.slice(0, 2)).toBe("00"); // 130 bits, two leading zeros
      const hex = BigInt(`0b${bits.slice(2)}`)
        .toString(16)
        .padStart(32, "0");
      expect(Number.parseInt(hex.slice(0, 12), 16)).toBe(Date.UTC(2026, 11, 7, 23, 50, 1, 2)); // 48-bit time
      expect(hex[12]).toBe("7"); // the version nibble
      expect(["8", "9", "a", "b"]).toContain(hex[16]!); // the variant bits
    }
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

describe("id floors: a time range as an id range", () => {
  test("every id made at a time or later sorts at or after its floor, every earlier one before", () => {
    const t = Date.UTC(2026, 11, 6, 20, 45, 0, 123);
    for (const d of [-1, 0, 1]) {
      const id = newId("evt", t + d);
      expect(id >= idFloor("evt", t)).toBe(d >= 0);
      expect(id < idFloor("evt", t + 1)).toBe(d <= 0);
    }
    // The least and the greatest ids of one millisecond, whatever their random part.
    const at = idFloor("evt", t);
    expect(`${at}0000000000000000` >= at && `${at}ZZZZZZZZZZZZZZZZ` < idFloor("evt", t + 1)).toBe(true);
    expect(idTime(`${at}0000000000000000`)).toBe(t);
    // Fractions go down; before the epoch is the least; past 48 bits is above every id.
    expect(idFloor("evt", t + 0.9)).toBe(at);
    expect(idFloor("evt", -5)).toBe("evt_0000000000");
    expect(idFloor("evt", 2 ** 48) > newId("evt", 2 ** 48 - 1)).toBe(true);
    expect(idFloor("dlv", t).startsWith("dlv_")).toBe(true);
  });
});

describe("sequence ids", () => {
  test("render an integer key as a fixed-width, prefixed id that sorts like the number", () => {
    const ids = [1, 2, 31, 32, 1000, 2 ** 40].map((n) => seqId("job", n));
    expect(ids[0]).toBe("job_0000000000001");
    expect([...ids].sort()).toEqual(ids);
    expect(ids.map((id) => parseSeqId("job", id))).toEqual([1, 2, 31, 32, 1000, 2 ** 40]);
  });

  test("every digit position round-trips, up to the largest safe integer", () => {
    expect(seqId("job", 2 ** 53 - 1)).toBe("job_007ZZZZZZZZZZ");
    expect(seqId("job", 32 ** 10)).toBe("job_0010000000000");
    const ns = [2 ** 53 - 1, 32 ** 10, 32 ** 10 - 1, 123_456_789_012_345];
    for (let i = 0; i < 1000; i++) ns.push(1 + Math.floor(Math.random() * (2 ** 53 - 2)));
    for (const n of ns) expect(parseSeqId("job", seqId("job", n))).toBe(n);
    const sorted = [...ns].sort((a, b) => a - b).map((n) => seqId("job", n));
    expect([...sorted].sort()).toEqual(sorted);
  });

  test("anything else is not one", () => {
    for (const bad of [
      "job_1",
      "evt_0000000000001",
      "job_000000000000U",
      "job_0000000000000",
      "job_00000000000001",
      "jobx0000000000001",
      "job_000000000000é",
      "job_00000000000\u{1F600}",
    ]) {
      expect(parseSeqId("job", bad)).toBeNull();
    }
  });
});
