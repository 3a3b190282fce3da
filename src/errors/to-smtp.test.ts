import { expect, test } from "bun:test";
import { AppError, ERROR_KINDS } from "./app-error.ts";
import { toSmtp } from "./to-smtp.ts";

test("every error kind has its SMTP answer; only what the client can act on is a 5xx", () => {
  const answers = Object.fromEntries(
    ERROR_KINDS.map((k) => [k, `${toSmtp(new AppError(k, "x")).code} ${toSmtp(new AppError(k, "x")).enhanced}`]),
  );
  expect(answers).toMatchObject({
    invalid_input: "501 5.5.4",
    unauthenticated: "535 5.7.8",
    forbidden: "550 5.7.1",
    not_found: "550 5.1.1",
    too_large: "552 5.3.4",
    rate_limited: "451 4.7.1",
    storage_full: "452 4.3.1",
    unavailable: "451 4.3.0",
    internal: "451 4.3.0",
    config_invalid: "451 4.3.0",
  });
});

test("anything that is no AppError: a storage failure is 452, the rest 451 with text that reveals nothing", () => {
  expect(toSmtp(Object.assign(new Error("disk full"), { code: "ENOSPC" }))).toMatchObject({
    code: 452,
    enhanced: "4.3.1",
  });
  const bug = toSmtp(new TypeError("cannot read properties of undefined (reading 'x')"));
  expect(bug).toEqual({ code: 451, enhanced: "4.3.0", text: "local error in processing; try again later" });
});
