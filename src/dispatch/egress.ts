import { lookup as dnsLookup } from "node:dns";
import { isIP } from "node:net";

/**
 * The egress guard (guarantee 8 (docs/guarantees.md)): the appliance talks only to the LAN unless an endpoint says
 * `allow_public: true`, and never to link-local, cloud-metadata, unspecified, multicast or
 * broadcast addresses.
 *
 * One function decides where a delivery may go: `guardDestination` takes the URL's host, an IP
 * literal in any spelling or a name, and returns the one address to connect to, checked, before
 * any socket exists. The connection is then pinned to that address (`pinnedLookup`), so a name
 * that resolves to a LAN address when checked and to 169.254.169.254 a moment later (DNS
 * rebinding) cannot slip through between the check and the connect; post.ts checks the socket
 * actually connected once more.
 *
 * The address table (docs/architecture.md, "The egress guard", shows it to operators):
 *
 * | range                                                   | class       | allowed                 |
 * |---------------------------------------------------------|-------------|-------------------------|
 * | 127.0.0.0/8, ::1                                        | loopback    | yes                     |
 * | 10/8, 172.16/12, 192.168/16, fc00::/7 (RFC 1918, 4193)  | private     | yes                     |
 * | everything else, 100.64.0.0/10 (CGNAT) included         | public      | with allow_public       |
 * | 169.254.169.254, 169.254.170.2, 100.100.100.200,        | metadata    | never                   |
 * |   168.63.129.16, fd00:ec2::254                          |             |                         |
 * | 169.254.0.0/16, fe80::/10                               | link-local  | never                   |
 * | 0.0.0.0/8, ::                                           | unspecified | never                   |
 * | 224.0.0.0/4, ff00::/8                                   | multicast   | never                   |
 * | 255.255.255.255                                         | broadcast   | never                   |
 * | 240.0.0.0/4                                             | reserved    | never                   |
 *
 * IPv6 addresses that carry an IPv4 address are judged by it. IPv4-mapped (::ffff:0:0/96) is
 * that IPv4 address on the wire, so it gets exactly its class. The translated and tunnelled forms
 * (IPv4-compatible ::/96, IPv4-translated ::ffff:0:0:0/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48,
 * 6to4 2002::/16, Teredo 2001::/32) get the carried address's class when that is refused or
 * public, and `public` when it is loopback or private: the packet leaves through a translator or
 * relay, which is not the LAN.
 */

export type AddressClass =
  | "loopback"
  | "private"
  | "public"
  | "metadata"
  | "link-local"
  | "unspecified"
  | "multicast"
  | "broadcast"
  | "reserved"
  /** Not an IP address at all (a resolver answered nonsense): refused. */
  | "invalid";

/** How an IPv6 address carries an IPv4 one. */
export type Carrier = "IPv4-mapped" | "IPv4-compatible" | "IPv4-translated" | "NAT64" | "6to4" | "Teredo";

export interface AddressVerdict {
  /** The address as given. */
  address: string;
  class: AddressClass;
  /** For an IPv6 address that carries an IPv4 one: which, and how (the class is decided by it). */
  carries?: { ipv4: string; via: Carrier };
}

// ---- parsing: every spelling of an address, to a number ----------------------------------------

/**
 * An IPv4 address in any spelling inet_aton(3) and the WHATWG URL parser accept: one to four
 * parts, each decimal, octal (leading 0) or hex (0x), the last part filling the remaining bytes
 * (`2852039166`, `0251.0376.0251.0376`, `0xa9fea9fe`, `169.254.43518`, `127.1`), a trailing dot
 * allowed. null when it is not one.
 */
export function parseIPv4(text: string): number | null {
  if (text.length > 64) return null;
  const parts = text.split(".");
  if (parts.length > 1 && parts.at(-1) === "") parts.pop();
  if (parts.length === 0 || parts.length > 4) return null;
  const values: number[] = [];
  for (const p of parts) {
    let v: number;
    if (/^0x[0-9a-f]*$/i.test(p)) v = p.length === 2 ? 0 : Number.parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) v = Number.parseInt(p.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(p)) v = Number(p);
    else return null;
    if (!Number.isSafeInteger(v)) return null;
    values.push(v);
  }
  const last = values.pop()!;
  if (values.some((v) => v > 255) || last >= 256 ** (4 - values.length)) return null;
  return values.reduce((acc, v, i) => acc + v * 256 ** (3 - i), 0) + last;
}

function ipv4Text(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** An IPv6 address (brackets and a %zone allowed) as a 128-bit number; null when it is not one. */
export function parseIPv6(text: string): bigint | null {
  const addr = text.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "");
  if (isIP(addr) !== 6) return null;
  let groups = addr.toLowerCase();
  // A trailing dotted IPv4 (::ffff:1.2.3.4) is the last two groups.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(groups);
  if (dotted) {
    const v4 = parseIPv4(dotted[2]!);
    if (v4 === null) return null;
    groups = `${dotted[1]}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head, tail] = groups.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  if (all.length !== 8) return null;
  return all.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g, 16)), 0n);
}

// ---- the tables -----------------------------------------------------------------------------------

type Range<T> = [net: T, bits: number, cls: AddressClass];

const v4 = (text: string) => parseIPv4(text)!;
const v6 = (text: string) => parseIPv6(text)!;

const METADATA_V4 = new Set([
  v4("169.254.169.254"), // AWS, GCP, Azure, OCI, OpenStack instance metadata
  v4("169.254.170.2"), // AWS ECS task metadata and credentials
  v4("100.100.100.200"), // Alibaba Cloud metadata
  v4("168.63.129.16"), // Azure WireServer (platform agent, DNS)
]);
const METADATA_V6 = new Set([v6("fd00:ec2::254")]); // AWS instance metadata over IPv6

/** First match wins: the more specific ranges come first. */
const RANGES_V4: Range<number>[] = [
  [v4("0.0.0.0"), 8, "unspecified"],
  [v4("127.0.0.0"), 8, "loopback"],
  [v4("10.0.0.0"), 8, "private"],
  [v4("172.16.0.0"), 12, "private"],
  [v4("192.168.0.0"), 16, "private"],
  [v4("169.254.0.0"), 16, "link-local"],
  [v4("224.0.0.0"), 4, "multicast"],
  [v4("255.255.255.255"), 32, "broadcast"],
  [v4("240.0.0.0"), 4, "reserved"],
];

const RANGES_V6: Range<bigint>[] = [
  [v6("::"), 128, "unspecified"],
  [v6("::1"), 128, "loopback"],
  [v6("fe80::"), 10, "link-local"],
  [v6("fc00::"), 7, "private"],
  [v6("ff00::"), 8, "multicast"],
];

const in4 = (a: number, net: number, bits: number) => bits === 0 || a >>> (32 - bits) === net >>> (32 - bits);
const in6 = (a: bigint, net: bigint, bits: number) => a >> BigInt(128 - bits) === net >> BigInt(128 - bits);
const bits32 = (a: bigint, fromBit: number) => Number((a >> BigInt(128 - fromBit - 32)) & 0xffffffffn);

function classify4(a: number): AddressClass {
  if (METADATA_V4.has(a)) return "metadata";
  return RANGES_V4.find(([net, bits]) => in4(a, net, bits))?.[2] ?? "public";
}

/** The IPv4 addresses an IPv6 address carries, and how; several when the layout is not certain. */
function carried(a: bigint): { via: Carrier; ipv4: number }[] {
  if (in6(a, v6("::ffff:0:0"), 96)) return [{ via: "IPv4-mapped", ipv4: bits32(a, 96) }];
  if (in6(a, v6("::ffff:0:0:0"), 96)) return [{ via: "IPv4-translated", ipv4: bits32(a, 96) }];
  if (in6(a, v6("::"), 96)) return [{ via: "IPv4-compatible", ipv4: bits32(a, 96) }];
  if (in6(a, v6("64:ff9b::"), 96)) return [{ via: "NAT64", ipv4: bits32(a, 96) }];
  // RFC 8215 local-use NAT64: the network's own prefix length is unknown; read the /96 layout
  // and the /48 one (RFC 6052 §2.2: bits 48-63 and 72-87, around the zero u-octet).
  if (in6(a, v6("64:ff9b:1::"), 48)) {
    const at48 = ((bits32(a, 48) >>> 16) << 16) | ((bits32(a, 72) >>> 16) & 0xffff);
    return [
      { via: "NAT64", ipv4: bits32(a, 96) },
      { via: "NAT64", ipv4: at48 >>> 0 },
    ];
  }
  if (in6(a, v6("2002::"), 16)) return [{ via: "6to4", ipv4: bits32(a, 16) }];
  // RFC 4380: the client's address, inverted, in the last 32 bits; the server's in bits 32-63.
  if (in6(a, v6("2001::"), 32)) {
    return [
      { via: "Teredo", ipv4: ~bits32(a, 96) >>> 0 },
      { via: "Teredo", ipv4: bits32(a, 32) },
    ];
  }
  return [];
}

/** The classes never connected to, the most telling first (it names a refusal with several causes). */
const REFUSED: readonly AddressClass[] = [
  "metadata",
  "link-local",
  "multicast",
  "broadcast",
  "reserved",
  "unspecified",
  "invalid",
];

/** What kind of destination an IP address is (any spelling; IPv6 carrying IPv4 judged by it). */
export function inspectAddress(address: string): AddressVerdict {
  const a4 = parseIPv4(address);
  if (a4 !== null) return { address, class: classify4(a4) };
  const a6 = parseIPv6(address);
  if (a6 === null) return { address, class: "invalid" };
  if (METADATA_V6.has(a6)) return { address, class: "metadata" };
  const own = RANGES_V6.find(([net, bits]) => in6(a6, net, bits))?.[2];
  if (own) return { address, class: own };
  const inner = carried(a6);
  if (!inner.length) return { address, class: "public" };
  if (inner[0]!.via === "IPv4-mapped")
    return {
      address,
      class: classify4(inner[0]!.ipv4),
      carries: { ipv4: ipv4Text(inner[0]!.ipv4), via: "IPv4-mapped" },
    };
  // Translated or tunnelled: the worst of what it carries, and never better than public.
  const judged = inner.map((c) => ({ ...c, cls: classify4(c.ipv4) }));
  const rank = (c: AddressClass) => (REFUSED.includes(c) ? REFUSED.indexOf(c) : REFUSED.length);
  const worst = judged.reduce((w, c) => (rank(c.cls) < rank(w.cls) ? c : w));
  return {
    address,
    class: REFUSED.includes(worst.cls) ? worst.cls : "public",
    carries: { ipv4: ipv4Text(worst.ipv4), via: worst.via },
  };
}

export function classify(address: string): AddressClass {
  return inspectAddress(address).class;
}

// ---- the decision -----------------------------------------------------------------------------------

/** Refused by the egress guard; the message says why in words an operator can act on. */
export class EgressRefused extends Error {
  override readonly name = "EgressRefused";
  constructor(
    readonly address: string,
    readonly addressClass: AddressClass,
    reason: string,
  ) {
    super(reason);
  }
}

const NAMES: Record<AddressClass, string> = {
  loopback: "a loopback address",
  private: "a private (LAN) address",
  public: "a public address",
  metadata: "a cloud metadata address",
  "link-local": "a link-local address",
  unspecified: "the unspecified address (it means this host)",
  multicast: "a multicast address",
  broadcast: "the broadcast address",
  reserved: "a reserved address",
  invalid: "not an IP address",
};

/**
 * Allowed: loopback and private always, public with allowPublic; everything else never. Throws
 * EgressRefused naming the address, what it carries and its class. `host`, when the address came
 * from resolving a name, is named too.
 */
export function checkAddress(address: string, opts: { allowPublic: boolean; host?: string }): AddressVerdict {
  const v = inspectAddress(address);
  if (v.class === "loopback" || v.class === "private") return v;
  if (v.class === "public" && opts.allowPublic) return v;
  const what = `${address}${v.carries ? ` (${v.carries.via} ${v.carries.ipv4})` : ""}`;
  const subject = opts.host && opts.host !== address ? `${opts.host} resolves to ${what},` : `${what} is`;
  const relayed = v.class === "public" && v.carries && classify4(parseIPv4(v.carries.ipv4)!) !== "public";
  const how = relayed ? ", reached through a translator or relay outside the LAN" : "";
  const why =
    v.class === "public"
      ? `${subject} ${NAMES.public}${how}: the endpoint needs allow_public: true`
      : `${subject} ${NAMES[v.class]}, which the appliance never connects to`;
  throw new EgressRefused(address, v.class, why);
}

export type Resolve = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolve: Resolve = (host) =>
  new Promise((resolve, reject) =>
    dnsLookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
  );

/**
 * Literal hosts already allowed, with their destination, keyed by allowPublic and the host as
 * written (a space between: no host has one). A literal's verdict depends on nothing but its text and
 * allowPublic, so every delivery to an endpoint after the first skips parsing and classifying it
 * again (1.4% of the main thread under the dispatch bench). Refusals are not kept: they throw
 * afresh, each with its own error. Bounded: cleared when full.
 */
const allowedLiterals = new Map<string, Readonly<Destination>>();
const ALLOWED_LITERALS_MAX = 1024;
const literalKey = (host: string, allowPublic: boolean) => `${allowPublic ? 1 : 0} ${host}`;

function allowedLiteral(host: string, allowPublic: boolean, to: Destination): Readonly<Destination> {
  if (allowedLiterals.size >= ALLOWED_LITERALS_MAX) allowedLiterals.clear();
  const frozen = Object.freeze(to);
  allowedLiterals.set(literalKey(host, allowPublic), frozen);
  return frozen;
}

/** The one address a delivery connects to, checked. */
export interface Destination {
  address: string;
  family: 4 | 6;
}

/**
 * Where a delivery to `host` (a URL's hostname: an IP literal in any spelling, brackets and all,
 * or a name) may connect: every delivery goes through here before its socket exists. A literal is
 * checked as it is; a name is resolved and refused unless every address it resolves to is allowed
 * (a name that is half LAN, half metadata is refused whole), then the first is returned. Throws
 * EgressRefused, or the resolver's error (ENOTFOUND …) when the name does not resolve.
 */
export async function guardDestination(
  host: string,
  opts: { allowPublic: boolean; resolve?: Resolve },
): Promise<Destination> {
  const known = allowedLiterals.get(literalKey(host, opts.allowPublic));
  if (known) return known;
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  const a4 = parseIPv4(bare);
  if (a4 !== null) {
    checkAddress(bare, opts);
    return allowedLiteral(host, opts.allowPublic, { address: ipv4Text(a4), family: 4 });
  }
  if (parseIPv6(bare) !== null) {
    checkAddress(bare, opts);
    return allowedLiteral(host, opts.allowPublic, { address: bare, family: 6 });
  }
  const list = await (opts.resolve ?? systemResolve)(bare);
  if (!list.length) throw Object.assign(new Error(`${bare} has no address`), { code: "ENOTFOUND" });
  for (const a of list) checkAddress(a.address, { ...opts, host: bare });
  const first = list[0]!;
  return { address: first.address, family: isIP(first.address) === 6 ? 6 : 4 };
}

/** A `lookup` for node:http(s) that answers with the checked address and nothing else: no second resolution. */
export function pinnedLookup(to: Destination) {
  return (_hostname: string, options: { all?: boolean } | number, callback: (...args: unknown[]) => void): void => {
    if (typeof options === "object" && options?.all) callback(null, [{ address: to.address, family: to.family }]);
    else callback(null, to.address, to.family);
  };
}

/** Whether two spellings name the same address (an IPv4-mapped IPv6 address is its IPv4 address). */
export function sameAddress(a: string, b: string): boolean {
  const n = (x: string): bigint | null => {
    const four = parseIPv4(x);
    if (four !== null) return 0xffff00000000n | BigInt(four);
    return parseIPv6(x);
  };
  const [x, y] = [n(a), n(b)];
  return x !== null && x === y;
}
