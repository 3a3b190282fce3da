/**
 * The DNS client of sender authentication: a stub resolver that asks recursive servers over UDP
 * (TCP when the answer was truncated) and answers in the shape of `dns.promises.resolve`, which
 * is what mailauth calls.
 *
 * Not node:dns: Bun 1.4.5's Resolver returns each character-string of a TXT record as a record
 * of its own, so a DKIM key published as several strings (every 2048-bit key) reaches mailauth
 * cut short; it also rounds timeouts up to a whole second, reports NODATA as ENOTFOUND and gives
 * no TTL to cache by. The wire format (RFC 1035) is small enough to speak directly.
 */
import { createSocket } from "node:dgram";
import { getServers } from "node:dns";
import { type Clock, systemClock } from "../core/clock.ts";
import { isIP, connect } from "node:net";

export interface DnsResolverOptions {
  /** "host" or "host:port", IPv6 as "[addr]:port" or bare; absent = the system's. Tried in order. */
  servers?: string[];
  /** How long to wait for one server's answer before trying the next, default 2000. */
  timeoutMs?: number;
  /** Answers kept, default 2000; the least recently used is dropped first. */
  cacheMax?: number;
  /** For cache expiry; tests move a ManualClock. */
  clock?: Clock;
}

export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

/** Codes as node:dns reports them, which is what mailauth maps: ENOTFOUND/ENODATA are "no record", the rest are temporary. */
type DnsErrorCode =
  | "ENOTFOUND"
  | "ENODATA"
  | "EBADNAME"
  | "ETIMEOUT"
  | "ESERVFAIL"
  | "EREFUSED"
  | "ECONNREFUSED"
  | "EBADRESP"
  | "ENOTIMP";

class DnsError extends Error {
  override readonly name = "DnsError";
  constructor(
    readonly code: DnsErrorCode,
    readonly hostname: string,
    rrtype: string,
  ) {
    super(`${code} ${rrtype} ${hostname}`);
  }
}

/** The types mailauth asks for. */
const TYPES: Record<string, number> = { A: 1, CNAME: 5, PTR: 12, MX: 15, TXT: 16, AAAA: 28 };
const SOA = 6;
const OPT = 41;
/** EDNS(0) buffer size (RFC 6891), the 2020 DNS flag day value: big keys arrive over UDP, unfragmented. */
const EDNS_UDP_SIZE = 1232;
/** Whatever the TTL, an answer is asked again within the hour: a rotated DKIM key is seen soon. */
const MAX_TTL_S = 3600;
/** RFC 2308 caches "no such record" for the SOA's minimum; we keep it short so a new record shows up soon. */
const MAX_NEGATIVE_TTL_S = 60;
const RCODE_ERRORS: Record<number, DnsErrorCode> = { 1: "EBADRESP", 2: "ESERVFAIL", 4: "ENOTIMP", 5: "EREFUSED" };

interface Server {
  host: string;
  port: number;
  family: 4 | 6;
}

/** A finished lookup: the records (already in node:dns shape), or why there are none. */
type Answer = { records: unknown[]; ttl: number } | { code: "ENOTFOUND" | "ENODATA"; ttl: number };

export function createDnsResolver(opts: DnsResolverOptions = {}): DnsResolver {
  const servers = (opts.servers ?? getServers()).map(parseServer);
  if (servers.length === 0) servers.push({ host: "127.0.0.1", port: 53, family: 4 });
  const timeoutMs = opts.timeoutMs ?? 2000;
  const cacheMax = opts.cacheMax ?? 2000;
  const clock = opts.clock ?? systemClock;
  const cache = new Map<string, { answer: Answer; expires: number }>();
  const inFlight = new Map<string, Promise<Answer>>();

  const remember = (key: string, answer: Answer): void => {
    if (answer.ttl <= 0 || cacheMax <= 0) return;
    cache.delete(key);
    cache.set(key, { answer, expires: clock.now() + answer.ttl * 1000 });
    if (cache.size > cacheMax) cache.delete(cache.keys().next().value!);
  };

  /** An answer as the caller gets it; a rejection made without `throw` (unwinding one cost more than the lookup). */
  const settle = (answer: Answer, name: string, rrtype: string): Promise<unknown> =>
    "code" in answer
      ? Promise.reject(noRecord(answer.code, name, rrtype))
      : // Callers may sort or change what they get (mailauth sorts MX lists): each gets its own copy.
        Promise.resolve(structuredClone(answer.records));

  return (name, rrtype) => {
    const type = TYPES[rrtype];
    if (type === undefined) return Promise.reject(new DnsError("ENOTIMP", name, rrtype));
    const qname = name.replace(/\.$/, "").toLowerCase();
    const key = `${rrtype} ${qname}`;
    const hit = cache.get(key);
    if (hit && hit.expires > clock.now()) {
      // Move to the end: the Map's insertion order is the LRU order.
      cache.delete(key);
      cache.set(key, hit);
      return settle(hit.answer, name, rrtype);
    }
    let pending = inFlight.get(key);
    if (!pending) {
      pending = lookup(servers, qname, rrtype, type, timeoutMs).finally(() => inFlight.delete(key));
      inFlight.set(key, pending);
      void pending.then(
        (a) => remember(key, a),
        () => {},
      );
    }
    return pending.then((answer) => settle(answer, name, rrtype));
  };
}

/** "1.1.1.1", "1.1.1.1:5353", "2606:4700::1111", "[2606:4700::1111]:53". Not a name: a resolver needs an address. */
function parseServer(spec: string): Server {
  const bracketed = /^\[(.+)\](?::(\d+))?$/.exec(spec);
  const plain = /^([^:]+)(?::(\d+))?$/.exec(spec);
  const [host, port] = bracketed
    ? [bracketed[1]!, bracketed[2]]
    : isIP(spec) === 6
      ? [spec, undefined]
      : [plain?.[1] ?? "", plain?.[2]];
  const family = isIP(host);
  const portNumber = Number(port ?? 53);
  if (family === 0 || !(portNumber >= 1 && portNumber <= 65535))
    throw new Error(`DNS server "${spec}" is not an IP address with an optional port`);
  return { host, port: portNumber, family: family as 4 | 6 };
}

/** Ask each server in turn until one gives a definite answer: records, NXDOMAIN or NODATA. */
async function lookup(
  servers: Server[],
  qname: string,
  rrtype: string,
  type: number,
  timeoutMs: number,
): Promise<Answer> {
  const query = encodeQuery(qname, rrtype, type);
  const id = query.readUInt16BE(0);
  const replyTo = (raw: Buffer): Message | null => {
    try {
      const message = decodeMessage(raw);
      return isReplyTo(message, id, qname, type) ? message : null;
    } catch {
      return null;
    }
  };
  let lastError = new DnsError("ETIMEOUT", qname, rrtype);
  for (const server of servers) {
    try {
      let message = await exchange("udp", server, query, timeoutMs, replyTo);
      if (message?.truncated) message = await exchange("tcp", server, query, timeoutMs, replyTo);
      if (!message) throw new DnsError("EBADRESP", qname, rrtype);
      return toAnswer(message, qname, type, rrtype);
    } catch (err) {
      // Not a DnsError: a record that would not decode (a Buffer read past its end). The server is at fault.
      lastError =
        err instanceof DnsError ? new DnsError(err.code, qname, rrtype) : new DnsError("EBADRESP", qname, rrtype);
    }
  }
  throw lastError;
}

// --- The wire format (RFC 1035 section 4). Buffer reads past the end throw: a malformed reply never decodes. ---

interface ResourceRecord {
  name: string;
  type: number;
  ttl: number;
  /** Where the RDATA starts in the message: names inside it may point at earlier ones. */
  offset: number;
  length: number;
}

interface Message {
  raw: Buffer;
  id: number;
  isResponse: boolean;
  truncated: boolean;
  rcode: number;
  question: { name: string; type: number } | null;
  answers: ResourceRecord[];
  authority: ResourceRecord[];
}

function encodeQuery(qname: string, rrtype: string, type: number): Buffer {
  const labels = qname === "" ? [] : qname.split(".");
  let nameLength = 1;
  for (const label of labels) {
    // Names reach us as A-labels (mailauth converts U-labels, RFC 8616): anything else is not a DNS name.
    if (label.length === 0 || label.length > 63 || /[^\x00-\x7f]/.test(label))
      throw new DnsError("EBADNAME", qname, rrtype);
    nameLength += label.length + 1;
  }
  if (nameLength > 255) throw new DnsError("EBADNAME", qname, rrtype);
  const buf = Buffer.alloc(12 + nameLength + 4 + 11);
  buf.writeUInt16BE(crypto.getRandomValues(new Uint16Array(1))[0]!, 0);
  buf.writeUInt16BE(0x0100, 2); // RD: the server recurses for us
  buf.writeUInt16BE(1, 4); // one question
  buf.writeUInt16BE(1, 10); // one additional record: the OPT
  let at = 12;
  for (const label of labels) {
    buf[at++] = label.length;
    at += buf.write(label, at, "latin1");
  }
  buf[at++] = 0;
  buf.writeUInt16BE(type, at);
  buf.writeUInt16BE(1, at + 2); // class IN
  // OPT pseudo-record (RFC 6891 section 6.1.2): root name, type 41, our UDP size in the class field, zero TTL and RDATA.
  buf.writeUInt16BE(OPT, at + 5);
  buf.writeUInt16BE(EDNS_UDP_SIZE, at + 7);
  return buf;
}

function decodeMessage(raw: Buffer): Message {
  const flags = raw.readUInt16BE(2);
  let at = 12;
  let question: Message["question"] = null;
  for (let i = raw.readUInt16BE(4); i > 0; i--) {
    const name = readName(raw, at);
    question ??= { name: name.name, type: raw.readUInt16BE(name.end) };
    at = name.end + 4;
  }
  const section = (count: number): ResourceRecord[] => {
    const records: ResourceRecord[] = [];
    for (let i = 0; i < count; i++) {
      const { name, end } = readName(raw, at);
      const length = raw.readUInt16BE(end + 8);
      if (end + 10 + length > raw.length) throw new RangeError("record runs past the message");
      records.push({ name, type: raw.readUInt16BE(end), ttl: raw.readUInt32BE(end + 4), offset: end + 10, length });
      at = end + 10 + length;
    }
    return records;
  };
  const answers = section(raw.readUInt16BE(6));
  const authority = section(raw.readUInt16BE(8));
  return {
    raw,
    id: raw.readUInt16BE(0),
    isResponse: (flags & 0x8000) !== 0,
    truncated: (flags & 0x0200) !== 0,
    rcode: flags & 0x0f,
    question,
    answers,
    authority,
  };
}

/** A reply counts only if it answers our question: same id, same name and type (RFC 5452 section 9.1). */
function isReplyTo(message: Message, id: number, qname: string, type: number): boolean {
  return (
    message.isResponse &&
    message.id === id &&
    message.question?.type === type &&
    message.question.name.toLowerCase() === qname
  );
}

/** A possibly compressed name (section 4.1.4); `end` is where the field ends, not where a pointer led. */
function readName(raw: Buffer, start: number): { name: string; end: number } {
  const labels: string[] = [];
  let at = start;
  let end = -1;
  for (let jumps = 0; ; ) {
    const len = raw.readUInt8(at);
    if (len === 0) break;
    if (len >= 0xc0) {
      if (++jumps > 64) throw new RangeError("compression loop");
      if (end < 0) end = at + 2;
      at = raw.readUInt16BE(at) & 0x3fff;
      continue;
    }
    if (len > 63 || at + 1 + len > raw.length) throw new RangeError("bad label");
    labels.push(raw.toString("latin1", at + 1, at + 1 + len));
    at += 1 + len;
  }
  return { name: labels.join("."), end: end < 0 ? at + 1 : end };
}

/** The records of the asked type at the name or at the end of its CNAME chain, shaped like node:dns's. */
function toAnswer(message: Message, qname: string, type: number, rrtype: string): Answer {
  if (message.rcode === 3) return { code: "ENOTFOUND", ttl: negativeTtl(message) };
  if (message.rcode !== 0) throw new DnsError(RCODE_ERRORS[message.rcode] ?? "EBADRESP", qname, rrtype);
  let owner = qname;
  let ttl = MAX_TTL_S;
  for (let hops = 0; type !== TYPES.CNAME && hops < 16; hops++) {
    const alias = message.answers.find((r) => r.type === TYPES.CNAME && r.name.toLowerCase() === owner);
    if (!alias) break;
    ttl = Math.min(ttl, alias.ttl);
    owner = readName(message.raw, alias.offset).name.toLowerCase();
  }
  const matching = message.answers.filter((r) => r.type === type && r.name.toLowerCase() === owner);
  if (matching.length === 0) return { code: "ENODATA", ttl: negativeTtl(message) };
  for (const r of matching) ttl = Math.min(ttl, r.ttl);
  return { records: matching.map((r) => decodeData(message.raw, r)), ttl };
}

/** RFC 2308 section 5: the smaller of the SOA's TTL and its MINIMUM field, capped. */
function negativeTtl(message: Message): number {
  const soa = message.authority.find((r) => r.type === SOA);
  if (!soa) return MAX_NEGATIVE_TTL_S;
  const afterNames = readName(message.raw, readName(message.raw, soa.offset).end).end;
  return Math.min(soa.ttl, message.raw.readUInt32BE(afterNames + 16), MAX_NEGATIVE_TTL_S);
}

function decodeData(raw: Buffer, r: ResourceRecord): unknown {
  const data = raw.subarray(r.offset, r.offset + r.length);
  switch (r.type) {
    case TYPES.A:
      if (data.length !== 4) throw new RangeError("A record is not 4 bytes");
      return data.join(".");
    case TYPES.AAAA:
      if (data.length !== 16) throw new RangeError("AAAA record is not 16 bytes");
      return formatIPv6(data);
    case TYPES.MX:
      return { priority: data.readUInt16BE(0), exchange: readName(raw, r.offset + 2).name };
    case TYPES.TXT: {
      // The character-strings of one record stay one record; the reader joins them (RFC 7208 section 3.3, RFC 6376 section 3.6.2.2).
      const strings: string[] = [];
      for (let at = 0; at < data.length; at += 1 + data[at]!) {
        if (at + 1 + data[at]! > data.length) throw new RangeError("TXT string runs past the record");
        // Bytes as latin1, as node:dns gives them: a stray non-ASCII byte stays visible to the record parser.
        strings.push(data.toString("latin1", at + 1, at + 1 + data[at]!));
      }
      return strings;
    }
    default: // CNAME, PTR: a name
      return readName(raw, r.offset).name;
  }
}

/** RFC 5952 text form: lower case, the longest run of two or more zero groups as "::". */
function formatIPv6(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = Math.max(i, j - 1);
  }
  if (best.at < 0) return groups.join(":");
  return `${groups.slice(0, best.at).join(":")}::${groups.slice(best.at + best.len).join(":")}`;
}

// --- Transport ---

/**
 * One query, one reply. UDP uses a fresh socket, so a new random source port per query (RFC 5452
 * section 9.2), connected, so that the ICMP "port unreachable" of an absent server is heard at once.
 * TCP frames each message with its length (RFC 1035 section 4.2.2). Replies that do not answer
 * the question are ignored and the timer keeps running; null means the server sent only those.
 */
function exchange(
  transport: "udp" | "tcp",
  server: Server,
  query: Buffer,
  timeoutMs: number,
  replyTo: (raw: Buffer) => Message | null,
): Promise<Message | null> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (outcome: DnsErrorCode | Message | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      close();
      if (typeof outcome === "string") reject(new DnsError(outcome, "", ""));
      else resolve(outcome);
    };
    const timer = setTimeout(() => finish("ETIMEOUT"), timeoutMs);
    let close: () => void;
    if (transport === "udp") {
      const socket = createSocket(server.family === 6 ? "udp6" : "udp4");
      close = () => socket.close();
      socket.on("error", () => finish("ECONNREFUSED"));
      socket.on("message", (raw) => {
        const message = replyTo(raw);
        if (message) finish(message);
      });
      socket.connect(server.port, server.host, () => socket.send(query));
    } else {
      const socket = connect({ host: server.host, port: server.port });
      close = () => socket.destroy();
      let received = Buffer.alloc(0);
      socket.on("error", () => finish("ECONNREFUSED"));
      socket.on("close", () => finish(null));
      socket.on("connect", () =>
        socket.write(Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query])),
      );
      socket.on("data", (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const length = received.length >= 2 ? received.readUInt16BE(0) : Infinity;
        if (received.length >= 2 + length) finish(replyTo(received.subarray(2, 2 + length)));
      });
    }
  });
}

/**
 * "No such record", thrown for every answer that says so, from the cache too: several a
 * message (SPF, DMARC and its organizational domain, for a sender without records). It is what
 * mailauth expects for an empty answer, not a failure, so it is made without a stack trace:
 * capturing one cost a third of sender authentication's CPU for such a sender (docs/performance.md).
 */
function noRecord(code: DnsErrorCode, name: string, rrtype: string): DnsError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new DnsError(code, name, rrtype);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
