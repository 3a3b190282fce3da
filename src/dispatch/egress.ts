import { lookup as dnsLookup } from "node:dns";
import { BlockList, isIP } from "node:net";

/**
 * The egress guard (SPEC §3.8): the appliance talks only to the LAN unless an endpoint says
 * `allow_public: true`, and never to link-local or cloud-metadata addresses. The check is made on
 * the address the socket actually connects to: the guard is the connection's DNS lookup, so a
 * name that resolves to a LAN address when checked and to 169.254.169.254 a moment later (DNS
 * rebinding) cannot slip through between a check and a connect.
 */

export type AddressClass = "loopback" | "private" | "link-local" | "metadata" | "unspecified" | "multicast" | "public";

function list(entries: [string, number][]): BlockList {
  const b = new BlockList();
  for (const [net, bits] of entries) b.addSubnet(net, bits, net.includes(":") ? "ipv6" : "ipv4");
  return b;
}

const METADATA = new Set(["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2"]);
const LOOPBACK = list([["127.0.0.0", 8], ["::1", 128]]);
/** RFC 1918 and RFC 4193 (unique local). */
const PRIVATE = list([["10.0.0.0", 8], ["172.16.0.0", 12], ["192.168.0.0", 16], ["fc00::", 7]]);
const LINK_LOCAL = list([["169.254.0.0", 16], ["fe80::", 10]]);
const UNSPECIFIED = list([["0.0.0.0", 8], ["::", 128]]);
const MULTICAST = list([["224.0.0.0", 4], ["255.255.255.255", 32], ["ff00::", 8]]);

/** What kind of destination an IP address is; IPv4-mapped IPv6 counts as its IPv4 address. */
export function classify(ip: string): AddressClass {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  const addr = (mapped ?? ip).toLowerCase().replace(/%.*$/, "");
  const family = isIP(addr) === 6 ? "ipv6" : "ipv4";
  if (METADATA.has(addr)) return "metadata";
  if (LOOPBACK.check(addr, family)) return "loopback";
  if (LINK_LOCAL.check(addr, family)) return "link-local";
  if (UNSPECIFIED.check(addr, family)) return "unspecified";
  if (MULTICAST.check(addr, family)) return "multicast";
  if (PRIVATE.check(addr, family)) return "private";
  return "public";
}

/** Refused by the egress guard; `reason` says why in words an operator can act on. */
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

/** Allowed: loopback and private always, public with allowPublic; link-local, metadata, unspecified, multicast never. */
export function checkAddress(ip: string, opts: { allowPublic: boolean }): void {
  const c = classify(ip);
  if (c === "loopback" || c === "private") return;
  if (c === "public" && opts.allowPublic) return;
  const why =
    c === "public"
      ? `${ip} is a public address: the endpoint needs allow_public: true`
      : `${ip} is a ${c} address, which the appliance never connects to`;
  throw new EgressRefused(ip, c, why);
}

export type Resolve = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolve: Resolve = (host) =>
  new Promise((resolve, reject) => dnsLookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))));

/**
 * A `lookup` for node:http(s) that resolves the name and refuses the connection unless every
 * address it resolves to is allowed (a name that is half LAN, half metadata is refused whole);
 * the connection then goes to the first address, the one that was checked.
 */
export function guardedLookup(opts: { allowPublic: boolean; resolve?: Resolve }) {
  const resolve = opts.resolve ?? systemResolve;
  return (hostname: string, options: { all?: boolean } | number, callback: (...args: any[]) => void): void => {
    const literal = isIP(hostname.replace(/^\[|\]$/g, ""));
    const addresses: Promise<{ address: string; family: number }[]> = literal
      ? Promise.resolve([{ address: hostname.replace(/^\[|\]$/g, ""), family: literal }])
      : resolve(hostname);
    addresses.then(
      (list) => {
        try {
          if (!list.length) throw Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" });
          for (const a of list) checkAddress(a.address, opts);
        } catch (e) {
          return callback(e);
        }
        const first = list[0]!;
        if (typeof options === "object" && options?.all) callback(null, [first]);
        else callback(null, first.address, first.family);
      },
      (e) => callback(e),
    );
  };
}
