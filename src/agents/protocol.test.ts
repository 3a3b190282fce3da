import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  checkMessage,
  encodeMessage,
  LineFramer,
  MAX_IN_FLIGHT,
  MAX_LINE_BYTES,
  type Message,
  Peer,
  type PeerOptions,
  ProtocolError,
} from "./protocol.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

function codeOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return e instanceof ProtocolError ? e.code : `not a ProtocolError: ${e}`;
  }
}

describe("LineFramer", () => {
  test("a message split over chunks, and several in one chunk, come out whole and in order", () => {
    const f = new LineFramer();
    expect(f.push(bytes('{"type":"a","x"'))).toEqual([]);
    expect(f.push(bytes(':1}\n{"type":"b"}\n{"id":3,'))).toEqual([{ type: "a", x: 1 }, { type: "b" }]);
    expect(f.push(bytes('"type":"c"}\n'))).toEqual([{ id: 3, type: "c" }]);
  });

  test("a UTF-8 character split between chunks is decoded once the line is complete", () => {
    const f = new LineFramer();
    const line = bytes('{"type":"n","s":"é"}\n');
    const cut = line.indexOf(0xc3) + 1;
    expect(f.push(line.subarray(0, cut))).toEqual([]);
    expect(f.push(line.subarray(cut))).toEqual([{ type: "n", s: "é" }]);
  });

  test("empty lines are skipped", () => {
    expect(new LineFramer().push(bytes('\n\n{"type":"a"}\n'))).toEqual([{ type: "a" }]);
  });

  test("a line of exactly the limit passes; one byte more is too_large before its newline arrives", () => {
    const f = new LineFramer(20);
    const exact = `{"type":"${"x".repeat(9)}"}`;
    expect(exact.length).toBe(20);
    expect(f.push(bytes(`${exact}\n`))).toHaveLength(1);
    const g = new LineFramer(20);
    expect(g.push(bytes(exact))).toEqual([]);
    expect(codeOf(() => g.push(bytes("x")))).toBe("too_large");
  });

  test("the default limit is 1 MiB a line", () => {
    const f = new LineFramer();
    expect(codeOf(() => f.push(new Uint8Array(MAX_LINE_BYTES + 1).fill(0x20)))).toBe("too_large");
  });

  test("what is not a JSON object with a type is malformed", () => {
    for (const line of [
      "not json",
      "[1]",
      "42",
      '{"x":1}',
      '{"type":""}',
      '{"type":"a","id":0}',
      '{"type":"a","id":1.5}',
    ])
      expect(codeOf(() => new LineFramer().push(bytes(`${line}\n`)))).toBe("malformed");
    expect(codeOf(() => new LineFramer().push(new Uint8Array([0x22, 0xff, 0x22, 0x0a])))).toBe("malformed");
  });

  test("a result needs its id, ok, and on failure an error with code and message", () => {
    expect(codeOf(() => checkMessage({ type: "result", ok: true }))).toBe("malformed");
    expect(codeOf(() => checkMessage({ id: 1, type: "result" }))).toBe("malformed");
    expect(codeOf(() => checkMessage({ id: 1, type: "result", ok: false, error: { code: "x" } }))).toBe("malformed");
    expect(checkMessage({ id: 1, type: "result", ok: false, error: { code: "x", message: "y" } }).id).toBe(1);
  });

  test("encodeMessage refuses to send a line the other side would refuse", () => {
    expect(encodeMessage({ type: "a" })).toBe('{"type":"a"}\n');
    expect(codeOf(() => encodeMessage({ type: "a", s: "é".repeat(MAX_LINE_BYTES / 2) }))).toBe("too_large");
  });
});

describe("Peer over a real socket", () => {
  let dir: string;
  let server: Server | null = null;
  const sockets: Socket[] = [];

  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
    server?.close();
    server = null;
    rmSync(dir, { recursive: true, force: true });
  });

  /** Two connected peers (a = the listener's side, b = the connecting side) and b's raw socket. */
  async function pair(aOpts: PeerOptions = {}, bOpts: PeerOptions = {}) {
    dir = mkdtempSync(join(tmpdir(), "proto-"));
    const path = join(dir, "s.sock");
    const accepted = new Promise<Socket>((resolve) => {
      server = createServer(resolve);
      server.listen(path);
    });
    await new Promise<void>((r) => server!.once("listening", () => r()));
    const raw = createConnection(path);
    await new Promise<void>((r) => raw.once("connect", () => r()));
    const s = await accepted;
    sockets.push(raw, s);
    return { a: new Peer(s, aOpts), b: new Peer(raw, bOpts), raw };
  }

  const until = async (cond: () => boolean, ms = 5000) => {
    const end = performance.now() + ms;
    while (!cond()) {
      if (performance.now() > end) throw new Error("condition not met in time");
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  test("a request is answered with its handler's result, both ways", async () => {
    const { a, b } = await pair(
      { onRequest: async (type, body) => ({ echo: type, body }) },
      { onRequest: (type) => (type === "hello" ? { token: "t" } : null) },
    );
    expect(await b.request("tool.call", { tool: "x", args: {} }, 1000)).toEqual({
      echo: "tool.call",
      body: { tool: "x", args: {} },
    });
    expect(await a.request("hello", { protocol: 1 }, 1000)).toEqual({ token: "t" });
  });

  test("a handler's failure is the answer's error; an unknown error says internal, not its message", async () => {
    const { b } = await pair({
      onRequest: (type) => {
        if (type === "known") throw new ProtocolError("forbidden", "not yours");
        throw new Error("secret detail");
      },
    });
    await expect(b.request("known", {}, 1000)).rejects.toMatchObject({ code: "forbidden", message: "not yours" });
    await expect(b.request("other", {}, 1000)).rejects.toMatchObject({ code: "internal", message: "internal error" });
  });

  test("a side without a request handler answers unsupported", async () => {
    const { b } = await pair();
    await expect(b.request("task", {}, 1000)).rejects.toMatchObject({ code: "unsupported" });
  });

  test("notifications reach onNotification with their body, and every message reaches onMessage", async () => {
    const got: [string, Record<string, unknown>][] = [];
    const seen: Message[] = [];
    const { b } = await pair({ onNotification: (t, body) => got.push([t, body]), onMessage: (m) => seen.push(m) });
    b.notify("heartbeat");
    b.notify("tool.result", { call_id: "c1", status: "done" });
    await until(() => got.length === 2);
    expect(got).toEqual([
      ["heartbeat", {}],
      ["tool.result", { call_id: "c1", status: "done" }],
    ]);
    expect(seen.map((m) => m.type)).toEqual(["heartbeat", "tool.result"]);
  });

  test("a request not answered in time fails with timeout, and its late answer is dropped", async () => {
    let release: (() => void) | null = null;
    const { b } = await pair({
      onRequest: (type) =>
        type === "slow" ? new Promise<unknown>((r) => (release = () => r({ late: true }))) : { fast: true },
    });
    await expect(b.request("slow", {}, 50)).rejects.toMatchObject({ code: "timeout" });
    release!();
    // The late answer (id 1) must not be taken for the next request's (id 2).
    expect(await b.request("fast", {}, 1000)).toEqual({ fast: true });
  });

  test(`at most ${MAX_IN_FLIGHT} requests wait for answers; one more is refused as busy at once`, async () => {
    const { b } = await pair({ onRequest: () => new Promise(() => {}) });
    const waiting = Array.from({ length: MAX_IN_FLIGHT }, () => b.request("t", {}, 60_000).catch((e) => e));
    await expect(b.request("t", {}, 60_000)).rejects.toMatchObject({ code: "busy" });
    b.close();
    for (const e of await Promise.all(waiting)) expect(e).toMatchObject({ code: "closed" });
  });

  test(`a peer that sends more than ${MAX_IN_FLIGHT} requests at once gets rate_limited for the extra ones`, async () => {
    const started: number[] = [];
    const { raw } = await pair({ onRequest: () => new Promise(() => started.push(1)) });
    const answers: Message[] = [];
    const framer = new LineFramer();
    raw.on("data", (c: Buffer) => answers.push(...framer.push(c)));
    raw.write(Array.from({ length: MAX_IN_FLIGHT + 2 }, (_, i) => encodeMessage({ id: i + 1, type: "t" })).join(""));
    await until(() => answers.length === 2);
    expect(answers.map((m) => [m.id, (m.error as { code: string }).code])).toEqual([
      [MAX_IN_FLIGHT + 1, "rate_limited"],
      [MAX_IN_FLIGHT + 2, "rate_limited"],
    ]);
    expect(started).toHaveLength(MAX_IN_FLIGHT);
  });

  test("a malformed line closes the connection after an error message that says why", async () => {
    let closedWith: unknown;
    const { raw } = await pair({ onClose: (r) => (closedWith = r) });
    let text = "";
    raw.on("data", (c: Buffer) => (text += c.toString()));
    const ended = new Promise((r) => raw.once("close", r));
    raw.write("this is not json\n");
    await ended;
    expect(JSON.parse(text)).toEqual({
      type: "error",
      code: "malformed",
      message: "a line is not one UTF-8 JSON value",
    });
    expect(closedWith).toEqual({ code: "malformed", message: "a line is not one UTF-8 JSON value" });
  });

  test("an over-long line closes the connection with too_large and fails the requests waiting on it", async () => {
    const { a, raw } = await pair();
    const waiting = a.request("hello", {}, 60_000).catch((e) => e);
    let text = "";
    raw.on("data", (c: Buffer) => (text += c.toString()));
    const ended = new Promise((r) => raw.once("close", r));
    raw.write(Buffer.alloc(MAX_LINE_BYTES + 10, 0x20));
    await ended;
    expect(text).toContain('"code":"too_large"');
    expect(await waiting).toMatchObject({ code: "closed" });
    expect(a.closed).toBe(true);
  });
});
