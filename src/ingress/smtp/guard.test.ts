import { describe, expect, test } from "bun:test";
import { fromStorageError } from "../../errors/index.ts";
import { storageUnavailable } from "./guard.ts";
import { SpoolUnavailableError } from "./spool.ts";

/** Which failures a sender is told to retry for lack of room (452 4.3.1) rather than "our bug" (451 4.3.0). */
describe("a storage failure during DATA", () => {
  const sqlite = (code: string) => Object.assign(new Error(code.toLowerCase()), { code });

  test("a full or read-only database, as the committer reports it, is 452 (it was 451 under load on a full disk)", () => {
    for (const code of ["SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR_WRITE"])
      expect(storageUnavailable(fromStorageError(sqlite(code), "committing"))).toBe(true);
  });

  test("a full or read-only spool is 452", () => {
    expect(storageUnavailable(new SpoolUnavailableError("ENOSPC", new Error("no space")))).toBe(true);
    expect(storageUnavailable(Object.assign(new Error("no space"), { code: "ENOSPC" }))).toBe(true);
  });

  test("anything else is not: 451", () => {
    expect(storageUnavailable(new TypeError("x is undefined"))).toBe(false);
    expect(storageUnavailable(fromStorageError(new Error("constraint failed"), "committing"))).toBe(false);
  });
});
