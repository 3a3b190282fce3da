import { describe, expect, test } from "bun:test";
import { unknownField } from "./fields.ts";

describe("the fields a match or a condition may name", () => {
  test("envelope fields, data fields with or without data., and their known sub-fields are known", () => {
    for (const f of [
      "channel",
      "agent",
      "type",
      "source.remote_ip",
      "source.headers.x-github-event",
      "data.subject",
      "subject",
      "auth.dmarc",
      "data.auth.spf",
      "from.address",
      "json.kind",
      "json.a.b.c",
      "telnyx.payload.x",
      "data.to",
    ]) {
      expect(unknownField(f, { action: false }), f).toBeNull();
    }
    for (const f of ["target", "tool", "action", "args.amount"])
      expect(unknownField(f, { action: true }), f).toBeNull();
    for (const f of ["binding", "sender"]) expect(unknownField(f, { action: false, route: true }), f).toBeNull();
  });

  test("a misspelt field is unknown, with the nearest name", () => {
    expect(unknownField("chanel", { action: false })).toBe("no event field 'chanel': did you mean 'channel'?");
    expect(unknownField("auth.dmrac", { action: false })).toBe("auth has no field 'dmrac': did you mean 'auth.dmarc'?");
    expect(unknownField("data.subjct", { action: false })).toBe(
      "data has no field 'subjct': did you mean 'data.subject'?",
    );
    expect(unknownField("source.remoteip", { action: false })).toBe(
      "source has no field 'remoteip': did you mean 'source.remote_ip'?",
    );
    expect(unknownField("frobnicate", { action: false })).toBe("no event field 'frobnicate'");
  });

  test("the action's fields only where there is an action (policies, not routes); no fields below a plain value", () => {
    expect(unknownField("target", { action: false })).toMatch(/^no event field 'target'/);
    expect(unknownField("subject.first", { action: false })).toBe("subject has no fields below it (subject.first)");
  });
});
