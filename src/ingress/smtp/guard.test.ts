import { describe, expect, test } from "bun:test";
import { fromStorageError } from "../../errors/index.ts";
import { createLogger, Redactor } from "../../core/log.ts";
import { guard, SmtpReply, storageUnavailable } from "./guard.ts";
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

/** Run one guarded handler as smtp-server would, and collect what it answers, logs and counts. */
async function guarded(handler: () => Promise<string | void>) {
  const lines: string[] = [];
  const counted: [string, string][] = [];
  const log = createLogger({ level: "debug", redactor: new Redactor(), sink: (l) => lines.push(l) });
  const callback = guard({ count: (stage, outcome) => counted.push([stage, outcome]), log }, "data", handler);
  const answers: { err: (Error & { responseCode?: number }) | null; message?: string }[] = [];
  await new Promise<void>((resolve) =>
    callback((err, message) => {
      answers.push({ err: err ?? null, message });
      resolve();
    }),
  );
  return { answers, logged: lines.map((l) => JSON.parse(l)), counted };
}

describe("the guard every smtp-server callback goes through", () => {
  test("an unexpected error is answered 451 4.3.0 without its text, and logged with it", async () => {
    const { answers, logged, counted } = await guarded(async () => {
      throw new TypeError("cannot read properties of undefined (reading 'secret-detail')");
    });
    expect(answers).toHaveLength(1);
    expect(answers[0]!.err).toBeInstanceOf(SmtpReply);
    expect(answers[0]!.err!.responseCode).toBe(451);
    expect(answers[0]!.err!.message).toBe("4.3.0 local error in processing; try again later");
    expect(answers[0]!.err!.message).not.toContain("secret-detail");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: "error", msg: "smtp stage failed", stage: "data" });
    expect(JSON.stringify(logged[0])).toContain("secret-detail");
    expect(counted).toEqual([["data", "error"]]);
  });

  test("a full disk or database is answered 452 4.3.1, so the sender retries", async () => {
    for (const e of [
      new SpoolUnavailableError("ENOSPC", new Error("no space left on device")),
      fromStorageError(Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" }), "committing"),
    ]) {
      const { answers, counted } = await guarded(async () => {
        throw e;
      });
      expect(answers).toHaveLength(1);
      expect(answers[0]!.err!.responseCode).toBe(452);
      expect(answers[0]!.err!.message).toBe("4.3.1 insufficient system storage; try again later");
      expect(counted).toEqual([["data", "unavailable"]]);
    }
  });

  test("an SmtpReply is answered as it is, counted with its outcome, and not logged as a failure", async () => {
    const reply = new SmtpReply(550, "5.1.1", "<x@y>: no such recipient here");
    const { answers, logged, counted } = await guarded(async () => {
      throw reply;
    });
    expect(answers).toEqual([{ err: reply, message: undefined }]);
    expect(logged).toEqual([]);
    expect(counted).toEqual([["data", "refused"]]);
  });

  test("a handler's return value is the callback's message, answered once", async () => {
    const { answers, counted } = await guarded(async () => "2.0.0 queued as msg_1");
    expect(answers).toEqual([{ err: null, message: "2.0.0 queued as msg_1" }]);
    expect(counted).toEqual([["data", "ok"]]);
  });
});
