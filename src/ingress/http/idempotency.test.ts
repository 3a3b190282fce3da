import { describe, expect, test } from "bun:test";
import { AppError } from "../../errors/index.ts";
import { idempotencyKey, MAX_DELIVERY_ID_BYTES } from "./idempotency.ts";

describe("idempotencyKey", () => {
  test("a short id is its own key, as it was stored before", () => {
    expect(idempotencyKey("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")).toBe("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
    expect(idempotencyKey("x".repeat(200))).toBe("x".repeat(200));
  });

  test("two long ids that share a 200-character prefix get two keys, each the hash of the whole id", () => {
    const a = idempotencyKey(`${"p".repeat(200)}-a`);
    const b = idempotencyKey(`${"p".repeat(200)}-b`);
    expect(a).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
    expect(idempotencyKey(`${"p".repeat(200)}-a`)).toBe(a);
  });

  test("an id that looks like a hashed key is hashed too: no id can pose as another's key", () => {
    const long = "q".repeat(300);
    expect(idempotencyKey(idempotencyKey(long))).not.toBe(idempotencyKey(long));
  });

  test(`an id over ${MAX_DELIVERY_ID_BYTES} UTF-8 bytes is refused as invalid input`, () => {
    expect(idempotencyKey("é".repeat(MAX_DELIVERY_ID_BYTES / 2))).toMatch(/^sha256:/);
    expect(() => idempotencyKey("é".repeat(MAX_DELIVERY_ID_BYTES / 2 + 1))).toThrow(AppError);
    expect(() => idempotencyKey("x".repeat(MAX_DELIVERY_ID_BYTES + 1))).toThrow(/at most 1024 bytes/);
  });
});
