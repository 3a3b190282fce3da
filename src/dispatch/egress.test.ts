import { describe, expect, test } from "bun:test";
import {
  type AddressClass,
  checkAddress,
  classify,
  EgressRefused,
  guardDestination,
  inspectAddress,
  parseIPv4,
  parseIPv6,
  pinnedLookup,
  sameAddress,
} from "./egress.ts";

describe("parseIPv4: every spelling inet_aton and the URL parser accept", () => {
  const metadata = 0xa9fea9fe; // 169.254.169.254
  const spellings = [
    "169.254.169.254",
    "2852039166",
    "0251.0376.0251.0376",
    "0xa9fea9fe",
    "0xA9FEA9FE",
    "0xa9.0xfe.0xa9.0xfe",
    "169.254.43518",
    "169.16689662",
    "0251.0xfe.43518",
    "169.254.169.254.",
  ];
  for (const s of spellings) test(`${s} is 169.254.169.254`, () => expect(parseIPv4(s)).toBe(metadata));
  test("short forms fill the last part: 127.1, 0, 0x", () => {
    expect(parseIPv4("127.1")).toBe(0x7f000001);
    expect(parseIPv4("0")).toBe(0);
    expect(parseIPv4("0x")).toBe(0);
  });
  for (const s of [
    "1.2.3.256",
    "256.1.1.1",
    "1.2.3.4.5",
    "4294967296",
    "08.1.1.1",
    "0x1g",
    "example.com",
    "1..2",
    "",
    ".",
    "1.2.3.-4",
    "１.2.3.4",
  ]) {
    test(`${JSON.stringify(s)} is not an IPv4 address`, () => expect(parseIPv4(s)).toBeNull());
  }
});

describe("parseIPv6", () => {
  test("compressed, full, dotted tail, brackets and zone all read the same", () => {
    const a = parseIPv6("::ffff:a9fe:a9fe");
    expect(a).toBe(0xffffa9fea9fen);
    expect(parseIPv6("[::ffff:169.254.169.254]")).toBe(a!);
    expect(parseIPv6("0:0:0:0:0:FFFF:A9FE:A9FE")).toBe(a!);
    expect(parseIPv6("fe80::1%eth0")).toBe((0xfe80n << 112n) | 1n);
    expect(parseIPv6("::")).toBe(0n);
  });
  for (const s of ["1.2.3.4", "::ffff:1.2.3.256", "1:2:3:4:5:6:7:8:9", "::g", "example.com"]) {
    test(`${s} is not an IPv6 address`, () => expect(parseIPv6(s)).toBeNull());
  }
});

describe("classify", () => {
  const cases: [string, AddressClass][] = [
    // Loopback and the LAN.
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["127.1", "loopback"],
    ["::1", "loopback"],
    ["10.0.0.5", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.20", "private"],
    ["fd12:3456::1", "private"],
    ["fc00::1", "private"],
    // Public, CGNAT included.
    ["172.32.0.1", "public"],
    ["8.8.8.8", "public"],
    ["100.64.0.1", "public"],
    ["100.127.255.254", "public"],
    ["2001:db8::1", "public"],
    ["2606:4700::1111", "public"],
    // Metadata, in every spelling.
    ["169.254.169.254", "metadata"],
    ["2852039166", "metadata"],
    ["0251.0376.0251.0376", "metadata"],
    ["0xa9fea9fe", "metadata"],
    ["169.254.170.2", "metadata"],
    ["100.100.100.200", "metadata"],
    ["168.63.129.16", "metadata"],
    ["fd00:ec2::254", "metadata"],
    ["FD00:EC2:0:0:0:0:0:254", "metadata"],
    // Link-local, unspecified, multicast, broadcast, reserved.
    ["169.254.10.1", "link-local"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["febf::1", "link-local"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["0", "unspecified"],
    ["::", "unspecified"],
    ["0:0:0:0:0:0:0:0", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["ff02::1", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["240.0.0.1", "reserved"],
    ["not-an-address", "invalid"],
    // IPv4-mapped: exactly the IPv4 address, dotted or hex.
    ["::ffff:169.254.169.254", "metadata"],
    ["::ffff:a9fe:a9fe", "metadata"],
    ["::ffff:10.1.2.3", "private"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:8.8.8.8", "public"],
    ["::ffff:0.0.0.0", "unspecified"],
    ["::ffff:808:808", "public"],
    // IPv4-compatible (deprecated) and IPv4-translated (SIIT).
    ["::169.254.169.254", "metadata"],
    ["::a9fe:a9fe", "metadata"],
    ["::ffff:0:a9fe:a9fe", "metadata"],
    ["::8.8.8.8", "public"],
    // NAT64, well-known and local-use prefixes.
    ["64:ff9b::169.254.169.254", "metadata"],
    ["64:ff9b::a9fe:a9fe", "metadata"],
    ["64:ff9b::e000:1", "multicast"],
    ["64:ff9b::808:808", "public"],
    ["64:ff9b:1::a9fe:a9fe", "metadata"],
    ["64:ff9b:1:a9fe:a9:fe00::", "metadata"],
    // 6to4: the IPv4 address in bits 16-47.
    ["2002:a9fe:a9fe::1", "metadata"],
    ["2002:a9fe:0101::", "link-local"],
    ["2002:0000:0000::1", "unspecified"],
    ["2002:808:808::1", "public"],
    // Teredo: the client's address inverted in the last 32 bits, the server's in bits 32-63.
    ["2001:0:4136:e378:8000:63bf:5601:5601", "metadata"],
    ["2001:0:a9fe:a9fe::f7f7:f7f7", "metadata"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "public"],
  ];
  for (const [ip, c] of cases) test(`${ip} is ${c}`, () => expect(classify(ip)).toBe(c));

  test("a translated or tunnelled form of a LAN address is public: it leaves through a relay", () => {
    for (const ip of [
      "::10.0.0.1",
      "::127.0.0.1",
      "64:ff9b::10.0.0.1",
      "64:ff9b::7f00:1",
      "2002:0a00:0001::1",
      "2002:7f00:1::",
    ])
      expect(classify(ip), ip).toBe("public");
  });

  test("what an IPv6 address carries is named", () => {
    expect(inspectAddress("::ffff:a9fe:a9fe")).toEqual({
      address: "::ffff:a9fe:a9fe",
      class: "metadata",
      carries: { ipv4: "169.254.169.254", via: "IPv4-mapped" },
    });
    expect(inspectAddress("64:ff9b::a9fe:a9fe").carries).toEqual({ ipv4: "169.254.169.254", via: "NAT64" });
    expect(inspectAddress("2002:a9fe:a9fe::").carries).toEqual({ ipv4: "169.254.169.254", via: "6to4" });
    expect(inspectAddress("::a9fe:a9fe").carries).toEqual({ ipv4: "169.254.169.254", via: "IPv4-compatible" });
    expect(inspectAddress("2001:0:4136:e378:8000:63bf:5601:5601").carries).toEqual({
      ipv4: "169.254.169.254",
      via: "Teredo",
    });
  });
});

describe("checkAddress", () => {
  test("LAN and loopback pass; public only with allow_public", () => {
    expect(() => checkAddress("10.0.0.5", { allowPublic: false })).not.toThrow();
    expect(() => checkAddress("::1", { allowPublic: false })).not.toThrow();
    expect(() => checkAddress("::ffff:192.168.0.9", { allowPublic: false })).not.toThrow();
    expect(() => checkAddress("8.8.8.8", { allowPublic: false })).toThrow(
      "8.8.8.8 is a public address: the endpoint needs allow_public: true",
    );
    expect(() => checkAddress("8.8.8.8", { allowPublic: true })).not.toThrow();
    expect(() => checkAddress("64:ff9b::10.0.0.1", { allowPublic: false })).toThrow(
      /NAT64 10\.0\.0\.1.*relay outside the LAN.*allow_public/,
    );
  });

  test("link-local, metadata, unspecified, multicast, broadcast are refused even with allow_public", () => {
    for (const ip of [
      "169.254.169.254",
      "fe80::1",
      "0.0.0.0",
      "::",
      "224.0.0.1",
      "255.255.255.255",
      "fd00:ec2::254",
      "100.100.100.200",
      "::ffff:a9fe:a9fe",
      "64:ff9b::a9fe:a9fe",
      "2002:a9fe:a9fe::",
    ]) {
      expect(() => checkAddress(ip, { allowPublic: true }), ip).toThrow(EgressRefused);
    }
  });

  test("the reason names the address, what it carries, its class, and the name it came from", () => {
    const refusal = (ip: string, host?: string) => {
      try {
        checkAddress(ip, { allowPublic: true, host });
      } catch (e) {
        return e as EgressRefused;
      }
      throw new Error(`${ip} passed`);
    };
    expect(refusal("::ffff:a9fe:a9fe").message).toBe(
      "::ffff:a9fe:a9fe (IPv4-mapped 169.254.169.254) is a cloud metadata address, which the appliance never connects to",
    );
    expect(refusal("fe80::1", "crm.lan").message).toBe(
      "crm.lan resolves to fe80::1, a link-local address, which the appliance never connects to",
    );
    expect(refusal("0.0.0.0")).toMatchObject({ address: "0.0.0.0", addressClass: "unspecified" });
  });
});

describe("guardDestination: the one place a delivery's address is decided", () => {
  const never = async (): Promise<never> => {
    throw new Error("a literal must not be resolved");
  };
  test("a literal in any spelling is checked as the address it is, without resolving", async () => {
    expect(await guardDestination("127.1", { allowPublic: false, resolve: never })).toEqual({
      address: "127.0.0.1",
      family: 4,
    });
    expect(await guardDestination("[::1]", { allowPublic: false, resolve: never })).toEqual({
      address: "::1",
      family: 6,
    });
    for (const host of [
      "169.254.169.254",
      "2852039166",
      "0251.0376.0251.0376",
      "0xa9fea9fe",
      "[::ffff:a9fe:a9fe]",
      "[fe80::1]",
      "100.100.100.200",
      "[::]",
      "0.0.0.0",
      "[64:ff9b::a9fe:a9fe]",
      "[2002:a9fe:a9fe::]",
      "[::a9fe:a9fe]",
    ]) {
      await expect(guardDestination(host, { allowPublic: true, resolve: never }), host).rejects.toBeInstanceOf(
        EgressRefused,
      );
    }
    await expect(guardDestination("93.184.216.34", { allowPublic: false, resolve: never })).rejects.toThrow(
      /allow_public/,
    );
    expect(await guardDestination("93.184.216.34", { allowPublic: true, resolve: never })).toEqual({
      address: "93.184.216.34",
      family: 4,
    });
  });

  test("a literal once allowed is remembered per allowPublic: the same answer again, never one that allowPublic would refuse", async () => {
    // The memo of allowed literals (egress.ts) must not let a public address through an endpoint without allow_public.
    expect(await guardDestination("0x5db8d822", { allowPublic: true, resolve: never })).toEqual({
      address: "93.184.216.34",
      family: 4,
    });
    await expect(guardDestination("0x5db8d822", { allowPublic: false, resolve: never })).rejects.toThrow(
      /allow_public/,
    );
    expect(await guardDestination("0x5db8d822", { allowPublic: true, resolve: never })).toEqual({
      address: "93.184.216.34",
      family: 4,
    });
    const first = await guardDestination("[fd00::7]", { allowPublic: false, resolve: never });
    expect(await guardDestination("[fd00::7]", { allowPublic: false, resolve: never })).toEqual(first);
    expect(Object.isFrozen(first)).toBe(true);
  });

  test("a name is refused whole when any address it resolves to is refused; else the first is the destination", async () => {
    const to =
      (...addresses: string[]) =>
      async () =>
        addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
    expect(await guardDestination("crm.lan", { allowPublic: false, resolve: to("10.0.0.7", "fd00::7") })).toEqual({
      address: "10.0.0.7",
      family: 4,
    });
    await expect(
      guardDestination("crm.lan", { allowPublic: true, resolve: to("10.0.0.7", "::ffff:a9fe:a9fe") }),
    ).rejects.toThrow("crm.lan resolves to ::ffff:a9fe:a9fe (IPv4-mapped 169.254.169.254), a cloud metadata address");
    await expect(guardDestination("crm.lan", { allowPublic: false, resolve: to() })).rejects.toMatchObject({
      code: "ENOTFOUND",
    });
    await expect(guardDestination("crm.lan", { allowPublic: false, resolve: to("nonsense") })).rejects.toThrow(
      /not an IP address/,
    );
  });
});

describe("pinnedLookup and sameAddress", () => {
  test("the lookup answers the checked address in both calling conventions", () => {
    const lookup = pinnedLookup({ address: "10.0.0.7", family: 4 });
    const seen: unknown[][] = [];
    lookup("crm.lan", { all: true }, (...args) => seen.push(args));
    lookup("crm.lan", 0, (...args) => seen.push(args));
    expect(seen).toEqual([
      [null, [{ address: "10.0.0.7", family: 4 }]],
      [null, "10.0.0.7", 4],
    ]);
  });
  test("IPv4-mapped is the same address as its IPv4 one; spellings of one IPv6 address are the same", () => {
    expect(sameAddress("::ffff:127.0.0.1", "127.0.0.1")).toBe(true);
    expect(sameAddress("::1", "0:0:0:0:0:0:0:1")).toBe(true);
    expect(sameAddress("127.0.0.1", "127.0.0.2")).toBe(false);
    expect(sameAddress("nonsense", "nonsense")).toBe(false);
  });
});
