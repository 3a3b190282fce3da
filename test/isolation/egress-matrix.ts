/**
 * The egress matrix (docs/architecture.md#the-egress-guard): every spelling of a forbidden destination, as an
 * IP literal in the URL and as what a name resolves to, and the allowed ones beside them.
 *
 * `bun test/isolation/egress-matrix.ts` is meant to run inside a private network namespace that
 * NAMESPACE_SETUP has given the forbidden addresses (egress.test.ts starts it under `unshare -n`):
 * one real listener on port 80 of every address counts the connections made to each, every case
 * goes through postJson (the dispatcher's only way out), and the results are printed as JSON.
 * Outside a namespace, egress.test.ts runs the same cases against guardDestination alone.
 */
import { createServer, type Socket } from "node:net";
import type { Resolve } from "../../src/dispatch/egress.ts";
import { postJson } from "../../src/dispatch/post.ts";

export interface EgressCase {
  url: string;
  allowPublic?: boolean;
  /** For a name: what the resolver answers (literal cases are never resolved). */
  resolve?: Resolve;
  /** `refused`: class egress and no connection anywhere; else the address the one connection must reach. */
  expect: "refused" | { deliveredTo: string };
  /** Words the refusal must contain. */
  reason?: string;
}

/** Addresses the namespace holds, so that a connection to any of them would succeed and be counted. */
const V4 = [
  "169.254.169.254",
  "169.254.170.2",
  "169.254.1.1",
  "100.100.100.200",
  "168.63.129.16",
  "93.184.216.34",
  "10.0.0.7",
  "100.64.0.7",
];
const V6 = [
  "fd00:ec2::254",
  "::a9fe:a9fe",
  "64:ff9b::a9fe:a9fe",
  "64:ff9b:1::a9fe:a9fe",
  "2002:a9fe:a9fe::1",
  "2001:0:4136:e378:8000:63bf:5601:5601",
  "2606:2800:220:1::",
  "fd12::7",
];
export const NAMESPACE_SETUP = [
  "set -e",
  "ip link set lo up",
  ...V4.map((a) => `ip addr add ${a}/32 dev lo`),
  ...V6.map((a) => `ip -6 addr add ${a}/128 dev lo nodad`),
  "ip -6 addr add fe80::1/64 dev lo nodad",
].join("; ");

const answers =
  (...addresses: string[]): Resolve =>
  async () =>
    addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
/** A name that answers each list in turn (the last one from then on): DNS rebinding. */
const rebinding = (...turns: string[][]): Resolve => {
  let call = 0;
  return async (host) => answers(...turns[Math.min(call++, turns.length - 1)]!)(host);
};
const metadata = "a cloud metadata address";
const rebind = rebinding(["127.0.0.1"], ["169.254.169.254"]);

export const CASES: EgressCase[] = [
  // The controls: loopback, the LAN and (with allow_public) a public address still deliver.
  { url: "http://127.0.0.1/", expect: { deliveredTo: "127.0.0.1" } },
  { url: "http://10.0.0.7/", expect: { deliveredTo: "10.0.0.7" } },
  { url: "http://[fd12::7]/", expect: { deliveredTo: "fd12::7" } },
  { url: "http://93.184.216.34/", allowPublic: true, expect: { deliveredTo: "93.184.216.34" } },
  { url: "http://crm.lan/", resolve: answers("10.0.0.7"), expect: { deliveredTo: "10.0.0.7" } },
  // IP literals, every spelling of the metadata address.
  { url: "http://169.254.169.254/latest/meta-data/", expect: "refused", reason: metadata },
  { url: "http://169.254.169.254/latest/meta-data/", allowPublic: true, expect: "refused", reason: metadata },
  { url: "http://2852039166/", expect: "refused", reason: metadata },
  { url: "http://0251.0376.0251.0376/", expect: "refused", reason: metadata },
  { url: "http://0xa9fea9fe/", expect: "refused", reason: metadata },
  { url: "http://0xa9.0xfe.0xa9.0xfe/", expect: "refused", reason: metadata },
  { url: "http://169.254.43518/", expect: "refused", reason: metadata },
  { url: "http://[::ffff:169.254.169.254]/", expect: "refused", reason: "IPv4-mapped 169.254.169.254" },
  { url: "http://[::ffff:a9fe:a9fe]/", expect: "refused", reason: "IPv4-mapped 169.254.169.254" },
  { url: "http://[::169.254.169.254]/", expect: "refused", reason: "IPv4-compatible 169.254.169.254" },
  { url: "http://[64:ff9b::169.254.169.254]/", expect: "refused", reason: "NAT64 169.254.169.254" },
  { url: "http://[64:ff9b:1::a9fe:a9fe]/", expect: "refused", reason: "NAT64 169.254.169.254" },
  { url: "http://[2002:a9fe:a9fe::1]/", expect: "refused", reason: "6to4 169.254.169.254" },
  { url: "http://[2001:0:4136:e378:8000:63bf:5601:5601]/", expect: "refused", reason: "Teredo 169.254.169.254" },
  { url: "http://[fd00:ec2::254]/", expect: "refused", reason: metadata },
  { url: "http://100.100.100.200/", allowPublic: true, expect: "refused", reason: metadata },
  { url: "http://169.254.170.2/v2/credentials", allowPublic: true, expect: "refused", reason: metadata },
  { url: "http://168.63.129.16/", allowPublic: true, expect: "refused", reason: metadata },
  { url: "http://169.254.1.1/", allowPublic: true, expect: "refused", reason: "link-local" },
  { url: "http://[fe80::1]/", allowPublic: true, expect: "refused", reason: "link-local" },
  { url: "http://0.0.0.0/", allowPublic: true, expect: "refused", reason: "unspecified" },
  { url: "http://0/", allowPublic: true, expect: "refused", reason: "unspecified" },
  { url: "http://[::]/", allowPublic: true, expect: "refused", reason: "unspecified" },
  { url: "http://[::ffff:0.0.0.0]/", allowPublic: true, expect: "refused", reason: "unspecified" },
  { url: "http://224.0.0.1/", allowPublic: true, expect: "refused", reason: "multicast" },
  { url: "http://255.255.255.255/", allowPublic: true, expect: "refused", reason: "broadcast" },
  { url: "http://93.184.216.34/", expect: "refused", reason: "allow_public" },
  { url: "http://[2606:2800:220:1::]/", expect: "refused", reason: "allow_public" },
  { url: "http://100.64.0.7/", expect: "refused", reason: "allow_public" },
  { url: "http://[64:ff9b::10.0.0.7]/", expect: "refused", reason: "relay outside the LAN" },
  // Names, resolving to each forbidden form.
  ...[
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "::a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "0xa9fea9fe",
    "2852039166",
  ].map(
    (address): EgressCase => ({
      url: "http://metadata.lan/",
      allowPublic: true,
      resolve: answers(address),
      expect: "refused",
      reason: metadata,
    }),
  ),
  {
    url: "http://linklocal.lan/",
    allowPublic: true,
    resolve: answers("fe80::1%lo"),
    expect: "refused",
    reason: "link-local",
  },
  {
    url: "http://linklocal.lan/",
    allowPublic: true,
    resolve: answers("169.254.1.1"),
    expect: "refused",
    reason: "link-local",
  },
  {
    url: "http://nothing.lan/",
    allowPublic: true,
    resolve: answers("0.0.0.0"),
    expect: "refused",
    reason: "unspecified",
  },
  { url: "http://nothing.lan/", allowPublic: true, resolve: answers("::"), expect: "refused", reason: "unspecified" },
  { url: "http://public.example/", resolve: answers("93.184.216.34"), expect: "refused", reason: "allow_public" },
  {
    url: "http://half.lan/",
    allowPublic: true,
    resolve: answers("10.0.0.7", "169.254.169.254"),
    expect: "refused",
    reason: metadata,
  },
  // DNS rebinding: checked LAN, then the name turns to metadata; nothing reaches it.
  { url: "http://rebind.lan/", resolve: rebind, expect: { deliveredTo: "127.0.0.1" } },
  { url: "http://rebind.lan/", resolve: rebind, expect: "refused", reason: metadata },
];

export interface EgressResult {
  url: string;
  allowPublic: boolean;
  resolved: boolean;
  ok: boolean;
  errorClass: string | null;
  error: string | null;
  remoteAddress: string | null;
  /** The local address of every connection the listeners accepted during this case. */
  connections: string[];
}

/** Run every case through postJson against the namespace's listeners (port 80 of every address). */
async function runInNamespace(): Promise<EgressResult[]> {
  let connections: string[] = [];
  const listener = createServer((socket: Socket) => {
    connections.push((socket.localAddress ?? "?").replace(/^::ffff:/, ""));
    socket.once("data", () => socket.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"));
    socket.on("error", () => {});
  });
  // One dual-stack listener on port 80 of every address: IPv4 ones arrive as ::ffff:a.b.c.d.
  await new Promise<void>((resolve, reject) => listener.once("error", reject).listen(80, "::", resolve));
  const results: EgressResult[] = [];
  for (const c of CASES) {
    connections = [];
    const a = await postJson(
      c.url,
      "{}",
      {},
      {
        allowPublic: c.allowPublic === true,
        connectTimeoutMs: 1000,
        timeoutMs: 2000,
        resolve: c.resolve ?? (async () => Promise.reject(new Error("a literal was resolved"))),
      },
    );
    results.push({
      url: c.url,
      allowPublic: c.allowPublic === true,
      resolved: !!c.resolve,
      ok: a.ok,
      errorClass: a.errorClass,
      error: a.error,
      remoteAddress: a.remoteAddress,
      connections,
    });
  }
  await new Promise((resolve) => listener.close(resolve));
  return results;
}

if (import.meta.main) {
  process.stdout.write(`${JSON.stringify(await runInNamespace())}\n`);
  process.exit(0);
}
