import { expect, test } from "bun:test";
import { AppError, fromStorageError, isStorageUnavailable } from "./app-error.ts";

test("one classifier says which failures are the storage's: a full, read-only or failing disk, for the database or a file", () => {
  const err = (code: string) => Object.assign(new Error(code.toLowerCase()), { code });
  for (const code of [
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_IOERR_WRITE",
    "SQLITE_CANTOPEN",
    "ENOSPC",
    "EROFS",
    "EIO",
    "EDQUOT",
  ])
    expect(isStorageUnavailable(err(code)), code).toBe(true);
  expect(isStorageUnavailable(new AppError("storage_full", "full"))).toBe(true);
  for (const e of [err("SQLITE_CONSTRAINT"), new TypeError("x"), new AppError("internal", "bug")])
    expect(isStorageUnavailable(e)).toBe(false);
  // The committer's own wrapping keeps the verdict.
  expect(fromStorageError(err("SQLITE_FULL"), "committing").kind).toBe("storage_full");
  expect(isStorageUnavailable(fromStorageError(err("SQLITE_FULL"), "committing"))).toBe(true);
  expect(fromStorageError(err("SQLITE_BUSY"), "committing").kind).toBe("unavailable");
});
