import { describe, expect, test } from "bun:test";
import { cookiesOf, safeNext, sameSecret, setCookie } from "./auth.ts";

describe("safeNext", () => {
  test("keeps a console or inbox path with its query", () => {
    expect(safeNext("/console/events?tenant=alpha&type=email.received")).toBe(
      "/console/events?tenant=alpha&type=email.received",
    );
    expect(safeNext("/t/alpha/inbox")).toBe("/t/alpha/inbox");
  });

  test("refuses every way out of this origin, and paths outside the console", () => {
    for (const next of [
      "//evil.example",
      "//evil.example/console",
      "/\\evil.example",
      "\\\\evil.example",
      "https://evil.example/console",
      "http:/evil.example",
      "javascript:alert(1)",
      "/console\r\nSet-Cookie: x=1",
      "/console\u0000",
      "console",
      "/v1/tokens",
      "/../v1/tokens",
      "",
      null,
      undefined,
      `/console/${"a".repeat(3000)}`,
    ])
      expect(safeNext(next), String(next)).toBe("/console");
  });

  test("a path that climbs out of /console is judged where it lands", () => {
    expect(safeNext("/console/../v1/tokens")).toBe("/console");
    expect(safeNext("/console/./events")).toBe("/console/events");
  });
});

test("sameSecret: equal strings only, empty never", () => {
  expect(sameSecret("abc", "abc")).toBe(true);
  expect(sameSecret("abc", "abd")).toBe(false);
  expect(sameSecret("abc", "abcd")).toBe(false);
  expect(sameSecret("", "")).toBe(false);
  expect(sameSecret(null, "x")).toBe(false);
});

test("cookies: the first of each name is read; a set cookie is HttpOnly and SameSite=Strict, Secure over TLS", () => {
  const request = new Request("http://x/", { headers: { cookie: "a=1; agentowl_session=tok; a=2" } });
  expect(cookiesOf(request).get("agentowl_session")).toBe("tok");
  expect(cookiesOf(request).get("a")).toBe("1");
  expect(setCookie("s", "v", { secure: false })).toBe("s=v; Path=/; HttpOnly; SameSite=Strict");
  expect(setCookie("s", "", { secure: true, path: "/console", maxAgeS: 0 })).toBe(
    "s=; Path=/console; HttpOnly; SameSite=Strict; Secure; Max-Age=0",
  );
});
