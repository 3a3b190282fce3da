import { describe, expect, test } from "bun:test";
import { type AddressClass, checkAddress, classify, EgressRefused } from "./egress.ts";

describe("classify", () => {
  const cases: [string, AddressClass][] = [
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["::1", "loopback"],
    ["10.0.0.5", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", "public"],
    ["192.168.1.20", "private"],
    ["fd12:3456::1", "private"],
    ["169.254.169.254", "metadata"],
    ["fd00:ec2::254", "metadata"],
    ["169.254.10.1", "link-local"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["::ffff:169.254.169.254", "metadata"],
    ["::ffff:10.1.2.3", "private"],
    ["::ffff:8.8.8.8", "public"],
    ["0.0.0.0", "unspecified"],
    ["::", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["ff02::1", "multicast"],
    ["8.8.8.8", "public"],
    ["2001:db8::1", "public"],
  ];
  for (const [ip, c] of cases) test(`${ip} is ${c}`, () => expect(classify(ip)).toBe(c));
});

describe("checkAddress", () => {
  test("LAN and loopback pass; public only with allow_public; link-local and metadata never", () => {
    expect(() => checkAddress("10.0.0.5", { allowPublic: false })).not.toThrow();
    expect(() => checkAddress("::1", { allowPublic: false })).not.toThrow();
    expect(() => checkAddress("8.8.8.8", { allowPublic: false })).toThrow(/allow_public/);
    expect(() => checkAddress("8.8.8.8", { allowPublic: true })).not.toThrow();
    for (const ip of ["169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1", "fd00:ec2::254"]) {
      expect(() => checkAddress(ip, { allowPublic: true }), ip).toThrow(EgressRefused);
    }
  });
});
