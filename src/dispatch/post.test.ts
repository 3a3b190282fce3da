import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { Agent } from "node:http";
import { createServer, type Server } from "node:net";
import { keepAliveAgent, postJson, signStandardWebhook } from "./post.ts";
import selfsigned from "selfsigned";

/** Real receivers on 127.0.0.1 that answer in every way an endpoint can. */
let server: ReturnType<typeof Bun.serve>;
let base: string;
let releaseSlow: () => void = () => {};
const slowReleased = new Promise<void>((resolve) => {
  releaseSlow = resolve;
});
const seen: { path: string; headers: Record<string, string>; body: string; port: number }[] = [];

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      seen.push({
        path,
        headers: Object.fromEntries(req.headers),
        body: await req.text(),
        port: server.requestIP(req)?.port ?? 0,
      });
      switch (path) {
        case "/ok":
          return new Response("thanks", { status: 200 });
        case "/busy":
          return new Response("slow down", { status: 429, headers: { "retry-after": "7" } });
        case "/gone":
          return new Response("no such hook", { status: 410 });
        case "/error":
          return new Response("x".repeat(5000), { status: 500 });
        case "/redirect":
          return new Response(null, { status: 302, headers: { location: `${base}/ok` } });
        case "/slow":
          // Answers only when the tests are over: an attempt to it can end only by its timeout.
          await slowReleased;
          return new Response("late");
        default:
          return new Response("?", { status: 404 });
      }
    },
  });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(() => {
  releaseSlow();
  server.stop(true);
});

const opts = { allowPublic: false, connectTimeoutMs: 1000, timeoutMs: 1000 };

describe("postJson", () => {
  test("2xx is ok, with status, latency, excerpt and the address connected to", async () => {
    const a = await postJson(`${base}/ok`, '{"a":1}', { "x-test": "1" }, opts);
    expect(a).toMatchObject({ ok: true, status: 200, excerpt: "thanks", errorClass: null, remoteAddress: "127.0.0.1" });
    expect(seen.at(-1)).toMatchObject({
      body: '{"a":1}',
      headers: { "content-type": "application/json", "x-test": "1" },
    });
  });

  test("429 with Retry-After, 410, 500 with a capped excerpt; a redirect is not followed", async () => {
    expect(await postJson(`${base}/busy`, "{}", {}, opts)).toMatchObject({
      ok: false,
      status: 429,
      retryAfterMs: 7000,
    });
    expect(await postJson(`${base}/gone`, "{}", {}, opts)).toMatchObject({ ok: false, status: 410 });
    const err = await postJson(`${base}/error`, "{}", {}, { ...opts, excerptBytes: 100 });
    expect(err.status).toBe(500);
    expect(err.excerpt.length).toBe(100);
    const before = seen.filter((s) => s.path === "/ok").length;
    expect(await postJson(`${base}/redirect`, "{}", {}, opts)).toMatchObject({ ok: false, status: 302 });
    expect(seen.filter((s) => s.path === "/ok").length).toBe(before);
  });

  test("a slow endpoint times out; a closed port is a connect error; a name that does not resolve is dns", async () => {
    const slow = await postJson(`${base}/slow`, "{}", {}, { ...opts, timeoutMs: 300 });
    expect(slow).toMatchObject({ ok: false, errorClass: "timeout" });
    expect(slow.latencyMs).toBeLessThan(1500);
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const port = closed.port;
    closed.stop(true);
    expect(await postJson(`http://127.0.0.1:${port}/`, "{}", {}, opts)).toMatchObject({
      ok: false,
      errorClass: "connect",
    });
    const nx = await postJson(
      "http://crm.invalid/",
      "{}",
      {},
      { ...opts, resolve: async () => Promise.reject(Object.assign(new Error("not found"), { code: "ENOTFOUND" })) },
    );
    expect(nx).toMatchObject({ ok: false, errorClass: "dns" });
  });

  test("an endpoint that is connected but answers after the connect timeout is not cut off by it", async () => {
    // Answers the request only once a second connection arrives: the check the connect timeout
    // makes of an attempt still waiting then.
    const sockets: import("node:net").Socket[] = [];
    const raw: Server = createServer((socket) => {
      sockets.push(socket);
      if (sockets.length === 2)
        sockets[0]!.write("HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nlate");
    });
    await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve));
    try {
      const port = (raw.address() as { port: number }).port;
      const a = await postJson(
        `http://127.0.0.1:${port}/`,
        "{}",
        {},
        { ...opts, connectTimeoutMs: 50, timeoutMs: 5000 },
      );
      expect(a).toMatchObject({ ok: true, status: 200, excerpt: "late", errorClass: null });
      expect(sockets.length).toBe(2);
    } finally {
      for (const s of sockets) s.destroy();
      raw.close();
    }
  });

  test("egress: public needs allow_public, metadata never; a name is checked at every connect (DNS rebinding)", async () => {
    const publicName = await postJson(
      "http://crm.example.com/",
      "{}",
      {},
      { ...opts, resolve: async () => [{ address: "93.184.216.34", family: 4 }] },
    );
    expect(publicName).toMatchObject({ ok: false, errorClass: "egress" });
    expect(publicName.error).toContain("allow_public");
    expect(
      await postJson("http://169.254.169.254/latest/meta-data", "{}", {}, { ...opts, allowPublic: true }),
    ).toMatchObject({ ok: false, errorClass: "egress" });
    // Half LAN, half metadata: refused whole.
    const mixed = async () => [
      { address: "127.0.0.1", family: 4 },
      { address: "169.254.169.254", family: 4 },
    ];
    expect(await postJson(`http://crm.lan:${server.port}/ok`, "{}", {}, { ...opts, resolve: mixed })).toMatchObject({
      ok: false,
      errorClass: "egress",
    });
    // The name answers LAN first, metadata next: the second connection is refused.
    let calls = 0;
    const rebinding = async () => [{ address: ++calls === 1 ? "127.0.0.1" : "169.254.169.254", family: 4 }];
    expect(await postJson(`http://crm.lan:${server.port}/ok`, "{}", {}, { ...opts, resolve: rebinding })).toMatchObject(
      { ok: true, remoteAddress: "127.0.0.1" },
    );
    expect(await postJson(`http://crm.lan:${server.port}/ok`, "{}", {}, { ...opts, resolve: rebinding })).toMatchObject(
      { ok: false, errorClass: "egress" },
    );
  });
});

/** A TCP listener that counts every connection made to it, HTTP or not. */
async function countingListener(
  host: string,
): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server: Server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, host, resolve));
  const port = (server.address() as { port: number }).port;
  return { port, connections: () => count, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("egress: every IP literal goes through the guard before a socket exists", () => {
  const never = async (): Promise<never> => {
    throw new Error("a literal must not be resolved");
  };
  const literals: [url: string, names: string][] = [
    ["http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"],
    ["http://2852039166/", "169.254.169.254 is a cloud metadata address"],
    ["http://0251.0376.0251.0376/", "169.254.169.254 is a cloud metadata address"],
    ["http://0xa9fea9fe/", "169.254.169.254 is a cloud metadata address"],
    ["http://169.254.43518/", "169.254.169.254 is a cloud metadata address"],
    ["http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe (IPv4-mapped 169.254.169.254) is a cloud metadata address"],
    ["http://[::ffff:a9fe:a9fe]/", "(IPv4-mapped 169.254.169.254) is a cloud metadata address"],
    ["http://[::169.254.169.254]/", "(IPv4-compatible 169.254.169.254) is a cloud metadata address"],
    ["http://[64:ff9b::169.254.169.254]/", "(NAT64 169.254.169.254) is a cloud metadata address"],
    ["http://[2002:a9fe:a9fe::1]/", "(6to4 169.254.169.254) is a cloud metadata address"],
    ["http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"],
    ["http://[fe80::1]/", "fe80::1 is a link-local address"],
    ["http://169.254.1.1/", "169.254.1.1 is a link-local address"],
    ["http://100.100.100.200/", "100.100.100.200 is a cloud metadata address"],
    ["http://169.254.170.2/v2/credentials", "169.254.170.2 is a cloud metadata address"],
    ["http://224.0.0.1/", "224.0.0.1 is a multicast address"],
    ["http://255.255.255.255/", "255.255.255.255 is the broadcast address"],
    ["http://[::]/", ":: is the unspecified address"],
    ["http://0.0.0.0/", "0.0.0.0 is the unspecified address"],
    ["http://0/", "0.0.0.0 is the unspecified address"],
    ["http://93.184.216.34/", "93.184.216.34 is a public address: the endpoint needs allow_public: true"],
    ["http://[2606:2800:220:1::]/", "2606:2800:220:1:: is a public address: the endpoint needs allow_public: true"],
  ];
  for (const [url, names] of literals) {
    test(`${url} is refused before any connect, class egress, the reason naming the address`, async () => {
      const a = await postJson(url, "{}", {}, { ...opts, resolve: never });
      expect(a).toMatchObject({ ok: false, status: null, errorClass: "egress", remoteAddress: null });
      expect(a.error).toContain(names);
    });
  }

  test("a literal LAN or loopback address, in any spelling, still delivers", async () => {
    for (const host of ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1"]) {
      expect(
        await postJson(`http://${host}:${server.port}/ok`, "{}", {}, { ...opts, resolve: never }),
        host,
      ).toMatchObject({ ok: true, remoteAddress: "127.0.0.1" });
    }
  });

  test("http://0.0.0.0:PORT/ and http://[::]:PORT/ reach nothing: the receivers on 127.0.0.1 and ::1 count 0 connections", async () => {
    const v4 = await countingListener("127.0.0.1");
    const v6 = await countingListener("::1").catch(() => null);
    try {
      for (const url of [
        `http://0.0.0.0:${v4.port}/`,
        `http://0:${v4.port}/`,
        `http://[::ffff:0.0.0.0]:${v4.port}/`,
        `http://[::]:${v4.port}/`,
        ...(v6 ? [`http://[::]:${v6.port}/`] : []),
      ]) {
        const a = await postJson(url, "{}", {}, { ...opts, allowPublic: true, resolve: never });
        expect(a, url).toMatchObject({ ok: false, errorClass: "egress", remoteAddress: null });
      }
      // The control: the same receiver counts a connection made to it by its own address.
      expect(await postJson(`http://127.0.0.1:${v4.port}/`, "{}", {}, opts)).toMatchObject({
        ok: false,
        errorClass: "connect",
      });
      expect(v4.connections()).toBe(1);
      expect(v6?.connections() ?? 0).toBe(0);
    } finally {
      await v4.close();
      await v6?.close();
    }
  });

  test("a name is resolved once, and the connection goes to the address that was checked", async () => {
    let calls = 0;
    const resolve = async () => {
      calls++;
      return [{ address: "127.0.0.1", family: 4 }];
    };
    expect(await postJson(`http://crm.lan:${server.port}/ok`, "{}", {}, { ...opts, resolve })).toMatchObject({
      ok: true,
      remoteAddress: "127.0.0.1",
    });
    expect(calls).toBe(1);
    expect(seen.at(-1)?.headers.host).toBe(`crm.lan:${server.port}`);
  });
});

describe("signStandardWebhook", () => {
  test("a receiver using the standardwebhooks package verifies the signature", () => {
    const secret = `whsec_${Buffer.from("dispatch-signing-secret-32-bytes").toString("base64")}`;
    const body = JSON.stringify({ id: "evt_1", type: "email.received" });
    const ts = Math.floor(Date.now() / 1000);
    const headers = signStandardWebhook(secret, "dlv_01", ts, body);
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(secret).verify(body.replace("email", "sms"), headers)).toThrow();
  });

  test("a key held for its lease signs every attempt alike, and a new secret on the same holder is keyed anew", () => {
    const secretOf = (s: string) => `whsec_${Buffer.from(s).toString("base64")}`;
    const [first, second] = [
      secretOf("dispatch-signing-secret-32-bytes"),
      secretOf("rotated-signing-secret-32-bytes!"),
    ];
    const holder = [first];
    const ts = Math.floor(Date.now() / 1000);
    for (const id of ["dlv_01", "dlv_02", "dlv_01"]) {
      const body = JSON.stringify({ id, type: "webhook.received" });
      const held = signStandardWebhook(first, id, ts, body, holder);
      expect(held).toEqual(signStandardWebhook(first, id, ts, body));
      expect(new Webhook(first).verify(body, held)).toEqual(JSON.parse(body));
    }
    const body = JSON.stringify({ id: "evt_2" });
    const rotated = signStandardWebhook(second, "dlv_03", ts, body, holder);
    expect(new Webhook(second).verify(body, rotated)).toEqual(JSON.parse(body));
    expect(() => new Webhook(first).verify(body, rotated)).toThrow();
  });
});

describe("kept-alive connections", () => {
  test("attempts through one agent reuse its connection, and each still reports the address it went to", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = seen.length;
      const a = await postJson(`${base}/ok`, "{}", {}, { ...opts, agent });
      const b = await postJson(`${base}/ok`, "{}", {}, { ...opts, agent });
      expect([a.ok, b.ok]).toEqual([true, true]);
      expect([a.remoteAddress, b.remoteAddress]).toEqual(["127.0.0.1", "127.0.0.1"]);
      const ports = seen.slice(before).map((x) => x.port);
      expect(ports).toHaveLength(2);
      expect(ports[0]).toBe(ports[1]!);
    } finally {
      agent.destroy();
    }
  });
});

describe("https endpoints", () => {
  test("an https endpoint through a kept-alive agent reaches the TLS handshake (an untrusted certificate is class tls, not a protocol error)", async () => {
    const pems = await selfsigned.generate([{ name: "commonName", value: "crm.lan" }], {
      keySize: 2048,
      notAfterDate: new Date(Date.now() + 86_400_000),
    });
    const tls = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { key: pems.private, cert: pems.cert },
      fetch: () => new Response("ok"),
    });
    const url = `https://127.0.0.1:${tls.port}/`;
    const agent = keepAliveAgent(url, { maxSockets: 1, idleMs: 1000 });
    try {
      const a = await postJson(url, "{}", {}, { ...opts, agent });
      expect(a).toMatchObject({ ok: false, errorClass: "tls", remoteAddress: "127.0.0.1" });
    } finally {
      agent.destroy();
      tls.stop(true);
    }
  });
});
