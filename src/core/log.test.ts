import { ManualClock } from "./clock.ts";
import { describe, expect, test } from "bun:test";
import { createLogger, REDACTED, Redactor } from "./log.ts";

function capture(level: "debug" | "info" | "warn" | "error" = "debug") {
  const lines: string[] = [];
  const redactor = new Redactor();
  const log = createLogger({ level, redactor, sink: (l) => lines.push(l), clock: new ManualClock(0) });
  return { lines, redactor, log, parsed: () => lines.map((l) => JSON.parse(l)) };
}

describe("JSON logs", () => {
  test("one JSON object per line with time, level, message and fields", () => {
    const { log, parsed } = capture();
    log.child({ component: "queue" }).info("job leased", { job: "job_1", attempt: 2 });
    expect(parsed()).toEqual([
      {
        time: "1970-01-01T00:00:00.000Z",
        level: "info",
        msg: "job leased",
        component: "queue",
        job: "job_1",
        attempt: 2,
      },
    ]);
  });

  test("lines below the threshold are dropped", () => {
    const { log, parsed } = capture("warn");
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    expect(parsed().map((l) => l.level)).toEqual(["warn", "error"]);
  });

  test("errors are logged by name and message", () => {
    const { log, parsed } = capture();
    log.error("failed", { err: new TypeError("bad thing") });
    expect(parsed()[0].err).toEqual({ name: "TypeError", message: "bad thing" });
  });
});

describe("the redactor", () => {
  test("a learned secret never appears, whatever carries it", () => {
    const { log, lines, redactor } = capture();
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    redactor.learn(secret);
    log.info(`verifying with ${secret}`, {
      header: `v1,${secret}`,
      nested: { deep: [secret] },
      url: `http://x/?k=${secret}`,
    });
    log.error("boom", { err: new Error(`bad key ${secret}`) });
    const all = lines.join("\n");
    expect(all).not.toContain(secret);
    expect(all.split(REDACTED).length - 1).toBe(5);
  });

  test("a secret with characters JSON escapes is still found", () => {
    const { log, lines, redactor } = capture();
    const secret = 'pa"ss\\word\n42';
    redactor.learn(secret);
    log.info("x", { value: `<${secret}>` });
    expect(lines[0]).not.toContain(JSON.stringify(secret).slice(1, -1));
    expect(JSON.parse(lines[0]!).value).toBe(`<${REDACTED}>`);
  });

  test("fields named like credentials are masked even when never learned", () => {
    const { log, parsed } = capture();
    log.info("login", {
      password: "hunter2hunter2",
      api_key: "k",
      Authorization: "Bearer abc",
      token_count: 3,
      user: "ann",
    });
    expect(parsed()[0]).toMatchObject({ password: REDACTED, api_key: REDACTED, Authorization: REDACTED, user: "ann" });
  });

  test("values too short to be secrets are not learned, so ordinary words survive", () => {
    const { log, lines, redactor } = capture();
    redactor.learn("info");
    log.info("info");
    expect(lines[0]).toContain('"msg":"info"');
  });
});
