/**
 * A real DNS server for tests: UDP and TCP on one port of 127.0.0.1 (dns2's servers), answering
 * from a zone map the way a recursive resolver would: NXDOMAIN for a name it does not know,
 * NODATA for a type the name has no records of (both with an SOA, as RFC 2308 asks), the CNAME
 * chain followed. Every question is recorded, so that a test can count what reached the server.
 */
import dns2 from "dns2";

const { Packet, UDPServer, TCPServer } = dns2;

export interface ZoneEntry {
  /** One item per record; a string longer than 255 bytes is cut into character-strings, an array gives them. */
  TXT?: (string | string[])[];
  A?: string[];
  AAAA?: string[];
  MX?: { priority: number; exchange: string }[];
  PTR?: string[];
  CNAME?: string;
  /** Never answer a question about this name that its records do not answer: a server that times out. */
  timeout?: boolean;
  /** Answer every question about this name with SERVFAIL, as a resolver whose upstream is broken does. */
  servfail?: boolean;
}

export type DnsZone = Record<string, ZoneEntry>;

export interface TestDnsServer {
  /** For createDnsResolver: `["127.0.0.1:PORT"]`. */
  servers: string[];
  /** Every question received, in order. */
  queries: { name: string; type: string; transport: "udp" | "tcp" }[];
  close(): Promise<void>;
}

const TYPE_NAMES: Record<number, string> = Packet.TYPE_NAME;
/** Of every record, and the negative TTL (the SOA's minimum): a test moves the resolver's clock past it. */
const TTL_S = 300;
const SOA = {
  primary: "ns.test",
  admin: "hostmaster.test",
  serial: 1,
  refresh: 3600,
  retry: 600,
  expiration: 86400,
  minimum: TTL_S,
};

export async function startDnsServer(zone: DnsZone): Promise<TestDnsServer> {
  const ttl = TTL_S;
  const names = new Map(Object.entries(zone).map(([name, entry]) => [name.toLowerCase().replace(/\.$/, ""), entry]));
  const queries: TestDnsServer["queries"] = [];

  const handle = (transport: "udp" | "tcp") => (request: any, send: (response: any) => void) => {
    const question = request.questions[0];
    const type = TYPE_NAMES[question.type] ?? String(question.type);
    queries.push({ name: question.name, type, transport });
    // Plain objects: dns2 encodes by the fields its record types use.
    const response = Packet.createResponseFromRequest(request) as unknown as {
      header: { rcode: number };
      answers: object[];
      authorities: object[];
    };
    let owner = question.name.toLowerCase();
    for (let hops = 0; hops < 8; hops++) {
      const entry = names.get(owner);
      if (!entry) {
        if (hops === 0) response.header.rcode = Packet.RCODE.NXDOMAIN;
        break;
      }
      if (entry.servfail) {
        response.header.rcode = Packet.RCODE.SERVFAIL;
        break;
      }
      if (entry.CNAME && type !== "CNAME") {
        response.answers.push({
          name: owner,
          type: Packet.TYPE.CNAME,
          class: Packet.CLASS.IN,
          ttl,
          domain: entry.CNAME,
        });
        owner = entry.CNAME.toLowerCase();
        continue;
      }
      const records = recordsOf(entry, type, owner, ttl);
      if (records.length === 0 && entry.timeout) return;
      response.answers.push(...records);
      break;
    }
    if (response.answers.length === 0 && response.header.rcode !== Packet.RCODE.SERVFAIL) {
      response.authorities.push({
        name: question.name.split(".").slice(-2).join("."),
        type: Packet.TYPE.SOA,
        class: Packet.CLASS.IN,
        ttl,
        ...SOA,
      });
    }
    send(response);
  };

  // The same port number over UDP and TCP (where a client goes when the UDP answer was
  // truncated). The UDP port the system picked may be taken over TCP: then pick again.
  let udp: any;
  let tcp: any;
  let port = 0;
  for (let tries = 0; ; tries++) {
    udp = new UDPServer(handle("udp") as any);
    await udp.listen(0, "127.0.0.1");
    port = udp.address().port;
    tcp = new TCPServer(handle("tcp") as any);
    const bound = await new Promise<boolean>((resolve, reject) => {
      tcp.once("error", (e: NodeJS.ErrnoException) =>
        e.code === "EADDRINUSE" && tries < 20 ? resolve(false) : reject(e),
      );
      tcp.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (bound) break;
    udp.close();
  }

  return {
    servers: [`127.0.0.1:${port}`],
    queries,
    close: async () => {
      udp.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}

function recordsOf(entry: ZoneEntry, type: string, name: string, ttl: number): object[] {
  const base = { name, type: Packet.TYPE[type as keyof typeof Packet.TYPE], class: Packet.CLASS.IN, ttl };
  switch (type) {
    case "TXT":
      return (entry.TXT ?? []).map((record) => ({ ...base, data: characterStrings(record) }));
    case "A":
    case "AAAA":
      return (entry[type] ?? []).map((address) => ({ ...base, address }));
    case "MX":
      return (entry.MX ?? []).map((mx) => ({ ...base, ...mx }));
    case "PTR":
      return (entry.PTR ?? []).map((domain) => ({ ...base, domain }));
    case "CNAME":
      return entry.CNAME ? [{ ...base, domain: entry.CNAME }] : [];
    default:
      return [];
  }
}

/** A test suite's string is bytes: characters up to U+00FF are one byte each (the SPF suite's "\xEF"), others UTF-8. */
function characterStrings(record: string | string[]): Buffer[] {
  const bytes = (s: string) => Buffer.from(s, /^[\x00-\xff]*$/.test(s) ? "latin1" : "utf8");
  if (Array.isArray(record)) return record.map(bytes);
  const all = bytes(record);
  const chunks: Buffer[] = [];
  for (let at = 0; at < all.length; at += 255) chunks.push(all.subarray(at, at + 255));
  return chunks.length > 0 ? chunks : [Buffer.alloc(0)];
}
