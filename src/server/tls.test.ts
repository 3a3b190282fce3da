import { describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureSelfSigned } from "../ingress/smtp/tls.ts";
import { fingerprintOf, isLoopback, isSelfSigned, parseFingerprint, plainAccess, servesHttps } from "./tls.ts";

describe("which listener speaks HTTPS", () => {
  test("loopback is 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost; nothing else", () => {
    for (const h of ["127.0.0.1", "127.255.0.9", "::1", "[::1]", "::ffff:127.0.0.1", "localhost", "LOCALHOST"])
      expect([h, isLoopback(h)]).toEqual([h, true]);
    for (const h of [
      "0.0.0.0",
      "::",
      "10.0.0.2",
      "192.168.1.1",
      "128.0.0.1",
      "::ffff:10.0.0.1",
      "fe80::1",
      "localhost.example",
      "agentowl.lan",
    ]) {
      expect([h, isLoopback(h)]).toEqual([h, false]);
    }
  });

  test("auto serves HTTPS on every address but loopback; on and off are what they say", () => {
    expect(servesHttps("auto", "0.0.0.0")).toBe(true);
    expect(servesHttps("auto", "::")).toBe(true);
    expect(servesHttps("auto", "10.0.0.2")).toBe(true);
    expect(servesHttps("auto", "127.0.0.1")).toBe(false);
    expect(servesHttps("auto", "::1")).toBe(false);
    expect(servesHttps("on", "127.0.0.1")).toBe(true);
    expect(servesHttps("off", "0.0.0.0")).toBe(false);
  });
});

describe("the certificate fingerprint", () => {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-fp-"));
  test(`is the SHA-256 that \`openssl x509 -fingerprint -sha256\` prints, and reads back however it is typed; the \
generated certificate names localhost`, async () => {
    try {
      await ensureSelfSigned(dir, "agentowl.lan");
      const pem = readFileSync(join(dir, "tls", "cert.pem"), "utf8");
      const fp = fingerprintOf(pem);
      expect(fp).toMatch(/^sha256:([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      let openssl: string | null = null;
      try {
        openssl = execFileSync("openssl", ["x509", "-noout", "-fingerprint", "-sha256"], { input: pem }).toString();
      } catch {
        // no openssl here: the format test below still holds
      }
      if (openssl) expect(openssl.trim().split("=")[1]).toBe(fp.slice("sha256:".length));
      const hex = fp.slice(7).replaceAll(":", "");
      for (const typed of [
        fp,
        fp.toLowerCase(),
        hex,
        hex.toLowerCase(),
        `SHA256:${hex}`,
        fp.slice(7).replaceAll(":", " "),
      ])
        expect(parseFingerprint(typed)).toBe(fp);
      expect(isSelfSigned(pem)).toBe(true);
      // On the box, `curl --cacert <data dir>/tls/cert.pem https://localhost:8080/` verifies it.
      const names = new X509Certificate(pem).subjectAltName!;
      for (const name of ["DNS:agentowl.lan", "DNS:localhost", "IP Address:127.0.0.1"]) expect(names).toContain(name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("anything but 32 bytes of hex is not a fingerprint", () => {
    for (const bad of ["", "sha256:", "sha256:AB", "md5:" + "ab".repeat(16), "zz".repeat(32), "ab".repeat(33)])
      expect([bad, parseFingerprint(bad)]).toEqual([bad, null]);
  });
});

describe("the plain-HTTP listener's rule", () => {
  test("loopback clients get every route", () => {
    for (const ip of ["127.0.0.1", "::1", "::ffff:127.0.0.1"]) {
      expect(plainAccess("GET", "/v1/tenants", ip)).toEqual({ kind: "allow" });
      expect(plainAccess("POST", "/v1/config/apply", ip)).toEqual({ kind: "allow" });
    }
  });

  test("other clients get /healthz and a webhook binding to look up; nothing else", () => {
    const lan = "10.0.0.7";
    expect(plainAccess("GET", "/healthz", lan)).toEqual({ kind: "allow" });
    expect(plainAccess("POST", "/ingress/webhook/beta/crm", lan)).toEqual({
      kind: "binding",
      tenant: "beta",
      binding: "crm",
    });
    expect(plainAccess("POST", "/ingress/webhook/b%65ta/crm", lan)).toEqual({
      kind: "binding",
      tenant: "beta",
      binding: "crm",
    });
    for (const [method, path] of [
      ["GET", "/readyz"],
      ["GET", "/metrics"],
      ["GET", "/v1/tenants"],
      ["POST", "/v1/sign-in"],
      ["POST", "/ingress/telnyx"],
      ["GET", "/ingress/webhook/beta/crm"],
      ["POST", "/ingress/webhook/beta/crm/"],
      ["POST", "/ingress/webhook/beta"],
      ["POST", "/ingress/webhook/beta/crm/../../../v1/tenants"],
      ["POST", "/ingress/webhook/%E0%A4%A/crm"],
      ["POST", "/healthz"],
      ["GET", "/"],
    ] as const) {
      expect([method, path, plainAccess(method, path, lan)]).toEqual([method, path, { kind: "deny" }]);
    }
    // An unknown client address is not loopback.
    expect(plainAccess("GET", "/v1/tenants", null)).toEqual({ kind: "deny" });
  });
});
