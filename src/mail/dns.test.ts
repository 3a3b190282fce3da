import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createSocket, type Socket } from "node:dgram";
import { startDnsServer, type TestDnsServer } from "../../test/helpers/dns-server.ts";
import { ManualClock } from "../core/clock.ts";
import { createDnsResolver } from "./dns.ts";

let server: TestDnsServer;
/** A UDP socket that takes every query and answers none. */
let blackHole: Socket;
let silent: string;

beforeAll(async () => {
  server = await startDnsServer({
    "example.test": {
      TXT: ["v=spf1 -all", ["v=DKIM1; p=first-half", "second-half"]],
      A: ["192.0.2.1"],
      AAAA: ["2001:db8::1", "2001:db8:0:0:1:0:0:1"],
      MX: [{ priority: 10, exchange: "mx.example.test" }],
    },
    "www.example.test": { CNAME: "example.test" },
    "1.2.0.192.in-addr.arpa": { PTR: ["example.test"] },
    "big.example.test": { TXT: Array.from({ length: 6 }, (_, i) => String(i).repeat(250)) },
    "down.example.test": { servfail: true },
    "slow.example.test": { timeout: true },
  });
  blackHole = createSocket("udp4");
  await new Promise<void>((resolve) => blackHole.bind(0, "127.0.0.1", resolve));
  silent = `127.0.0.1:${blackHole.address().port}`;
});

afterAll(async () => {
  await server.close();
  blackHole.close();
});

const failure = (p: Promise<unknown>) =>
  p.then(
    () => "resolved",
    (e: { code?: string }) => e.code,
  );

describe("answers in the shape of dns.promises.resolve", () => {
  const resolve = () => createDnsResolver({ servers: server.servers });

  test("TXT: one array per record, its character-strings kept together", async () => {
    expect(await resolve()("example.test", "TXT")).toEqual([["v=spf1 -all"], ["v=DKIM1; p=first-half", "second-half"]]);
  });

  test("A, AAAA (RFC 5952 text), MX, PTR, and a CNAME followed", async () => {
    const r = resolve();
    expect(await r("example.test", "A")).toEqual(["192.0.2.1"]);
    expect(await r("example.test", "AAAA")).toEqual(["2001:db8::1", "2001:db8::1:0:0:1"]);
    expect(await r("example.test", "MX")).toEqual([{ priority: 10, exchange: "mx.example.test" }]);
    expect(await r("1.2.0.192.in-addr.arpa", "PTR")).toEqual(["example.test"]);
    expect(await r("WWW.Example.Test.", "A")).toEqual(["192.0.2.1"]);
  });

  test("an answer too big for a datagram comes over TCP", async () => {
    const records = (await resolve()("big.example.test", "TXT")) as string[][];
    expect(records.map((r) => r.join("").length)).toEqual([250, 250, 250, 250, 250, 250]);
    expect(server.queries.filter((q) => q.name === "big.example.test").map((q) => q.transport)).toEqual(["udp", "tcp"]);
  });
});

describe("errors carry the codes mailauth maps", () => {
  test("no such name is ENOTFOUND, no such record ENODATA (both mean none)", async () => {
    const r = createDnsResolver({ servers: server.servers });
    expect(await failure(r("nothing.example.test", "TXT"))).toBe("ENOTFOUND");
    expect(await failure(r("example.test", "PTR"))).toBe("ENODATA");
  });

  test("a no-such-record error is an Error with its code, name and message, made without a stack trace; the limit is left as it was", async () => {
    const r = createDnsResolver({ servers: server.servers });
    const limit = Error.stackTraceLimit;
    for (let i = 0; i < 2; i++) {
      // The first from the server, the second from the cache.
      const e = (await r("nothing.example.test", "TXT").catch((x) => x)) as Error & { code: string; hostname: string };
      expect(e).toBeInstanceOf(Error);
      expect({ code: e.code, hostname: e.hostname, message: e.message, name: e.name }).toEqual({
        code: "ENOTFOUND",
        hostname: "nothing.example.test",
        message: "ENOTFOUND TXT nothing.example.test",
        name: "DnsError",
      });
      expect(e.stack ?? "").not.toContain(" at ");
    }
    expect(Error.stackTraceLimit).toBe(limit);
  });

  test("SERVFAIL is ESERVFAIL, after the next server was asked too", async () => {
    const r = createDnsResolver({ servers: [...server.servers, ...server.servers] });
    const before = server.queries.length;
    expect(await failure(r("down.example.test", "TXT"))).toBe("ESERVFAIL");
    expect(server.queries.length - before).toBe(2);
  });

  test("a server that never answers is ETIMEOUT after timeoutMs; the next server is tried", async () => {
    const started = performance.now();
    expect(await failure(createDnsResolver({ servers: [silent], timeoutMs: 200 })("example.test", "TXT"))).toBe(
      "ETIMEOUT",
    );
    expect(performance.now() - started).toBeLessThan(1000);
    expect(
      await createDnsResolver({ servers: [silent, ...server.servers], timeoutMs: 200 })("example.test", "A"),
    ).toEqual(["192.0.2.1"]);
  });

  test("a port nobody listens on is ECONNREFUSED at once", async () => {
    const closed = createSocket("udp4");
    await new Promise<void>((resolve) => closed.bind(0, "127.0.0.1", resolve));
    const port = closed.address().port;
    closed.close();
    const started = performance.now();
    expect(
      await failure(createDnsResolver({ servers: [`127.0.0.1:${port}`], timeoutMs: 2000 })("example.test", "TXT")),
    ).toBe("ECONNREFUSED");
    expect(performance.now() - started).toBeLessThan(1000);
  });

  test("a name that cannot be sent is EBADNAME, without a query", async () => {
    const r = createDnsResolver({ servers: server.servers });
    const before = server.queries.length;
    expect(await failure(r(`${"a".repeat(64)}.example.test`, "TXT"))).toBe("EBADNAME");
    expect(await failure(r("a..example.test", "TXT"))).toBe("EBADNAME");
    expect(server.queries.length).toBe(before);
  });

  test("a DNS server must be an address", () => {
    expect(() => createDnsResolver({ servers: ["dns.example.test"] })).toThrow("not an IP address");
    expect(() =>
      createDnsResolver({ servers: ["[2001:db8::53]:5353", "2001:db8::53", "192.0.2.53:53"] }),
    ).not.toThrow();
  });
});

describe("the cache", () => {
  const asked = (name: string) => server.queries.filter((q) => q.name === name).length;

  test("a second lookup of the same name does not reach the server", async () => {
    const r = createDnsResolver({ servers: server.servers });
    const before = asked("example.test");
    expect(await r("example.test", "TXT")).toEqual(await r("Example.Test", "TXT"));
    expect(asked("example.test") - before).toBe(1);
  });

  test("answers expire with their TTL, no-such-name answers sooner", async () => {
    const clock = new ManualClock(1_000_000);
    const r = createDnsResolver({ servers: server.servers, clock });
    const before = { a: asked("example.test"), nx: asked("gone.example.test") };
    await r("example.test", "A");
    await failure(r("gone.example.test", "A"));
    clock.advance(59_000);
    await r("example.test", "A");
    await failure(r("gone.example.test", "A"));
    expect([asked("example.test") - before.a, asked("gone.example.test") - before.nx]).toEqual([1, 1]);
    // The test server's TTL is 300 s; a negative answer is kept at most 60 s.
    clock.advance(2_000);
    await r("example.test", "A");
    await failure(r("gone.example.test", "A"));
    expect([asked("example.test") - before.a, asked("gone.example.test") - before.nx]).toEqual([1, 2]);
    clock.advance(300_000);
    await r("example.test", "A");
    expect(asked("example.test") - before.a).toBe(2);
  });

  test("a timeout is not remembered", async () => {
    const r = createDnsResolver({ servers: server.servers, timeoutMs: 100 });
    const before = asked("slow.example.test");
    expect(await failure(r("slow.example.test", "TXT"))).toBe("ETIMEOUT");
    expect(await failure(r("slow.example.test", "TXT"))).toBe("ETIMEOUT");
    expect(asked("slow.example.test") - before).toBe(2);
  });

  test("the least recently used answer is dropped first", async () => {
    const r = createDnsResolver({ servers: server.servers, cacheMax: 2 });
    const before = server.queries.length;
    await r("example.test", "A");
    await r("example.test", "AAAA");
    await r("example.test", "A");
    await r("example.test", "MX"); // evicts AAAA, used longest ago
    await r("example.test", "A");
    await r("example.test", "AAAA");
    expect(server.queries.slice(before).map((q) => q.type)).toEqual(["A", "AAAA", "MX", "AAAA"]);
  });

  test("callers get their own copy", async () => {
    const r = createDnsResolver({ servers: server.servers });
    ((await r("example.test", "TXT")) as string[][]).pop();
    expect(await r("example.test", "TXT")).toHaveLength(2);
  });
});
