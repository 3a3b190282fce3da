/**
 * Request bodies (body.ts): every bound is checked before the work it guards. Requests built over
 * ReadableStreams that count what is pulled from them show how much is read before a refusal;
 * a Bun server on 127.0.0.1 shows the same over a real socket.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import type { Server } from "bun";
import { AppError, problemResponse, toProblem } from "../errors/index.ts";
import { jsonNestsDeeper, MAX_JSON_DEPTH, parseJsonBounded, readBody, utf8 } from "./body.ts";

/** A body of `total` bytes in `chunk`-byte pieces, produced only when pulled; `pulled` counts them. */
function countingStream(chunk: number, total: number) {
  const seen = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (seen.pulled >= total) return controller.close();
        const n = Math.min(chunk, total - seen.pulled);
        seen.pulled += n;
        controller.enqueue(new Uint8Array(n).fill(0x61));
      },
      cancel() {
        seen.cancelled = true;
      },
    },
    // Nothing is produced ahead of a read: `pulled` is what the reader asked for.
    { highWaterMark: 0 },
  );
  return { seen, stream };
}

const post = (body: RequestInit["body"], headers: Record<string, string> = {}) =>
  new Request("http://127.0.0.1/ingress", { method: "POST", body, headers });

/** The AppError a promise rejects with (fails the test if it resolves or rejects with anything else). */
async function refusal(p: Promise<unknown>): Promise<AppError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AppError);
  return e as AppError;
}

describe("readBody over a Request", () => {
  test("a body within the limit is read whole, byte for byte", async () => {
    const bytes = Uint8Array.from({ length: 5000 }, (_, i) => i % 251);
    const read = await readBody(post(bytes), 5000);
    expect(read).toEqual(bytes);
  });

  test("a chunked body without Content-Length is read whole when it fits, however it is split", async () => {
    const { seen, stream } = countingStream(700, 10_000);
    const request = post(stream);
    expect(request.headers.get("content-length")).toBeNull();
    const read = await readBody(request, 10_000);
    expect(read.byteLength).toBe(10_000);
    expect(read.every((b) => b === 0x61)).toBe(true);
    expect(seen.pulled).toBe(10_000);
  });

  test(`a chunked body over the limit is refused 413 once it crosses the limit: no more than one chunk past it is \
pulled, and the stream is cancelled`, async () => {
    const { seen, stream } = countingStream(1000, 1_000_000);
    const e = await refusal(readBody(post(stream), 10_000));
    expect(e.kind).toBe("too_large");
    expect(toProblem(e).status).toBe(413);
    expect(e.detail).toBe("the body may have at most 10000 bytes");
    expect(seen.pulled).toBeGreaterThan(10_000);
    expect(seen.pulled).toBeLessThanOrEqual(10_000 + 1000);
    expect(seen.cancelled).toBe(true);
  });

  test("a Content-Length over the limit is refused 413 before a byte is read", async () => {
    const { seen, stream } = countingStream(1000, 1_000_000);
    const e = await refusal(readBody(post(stream, { "content-length": "1000000" }), 10_000));
    expect(e.kind).toBe("too_large");
    expect(seen.pulled).toBe(0);
  });

  test("a body of exactly the limit is taken; one byte more is not", async () => {
    expect((await readBody(post(new Uint8Array(64)), 64)).byteLength).toBe(64);
    expect((await readBody(post(countingStream(64, 64).stream), 64)).byteLength).toBe(64);
    expect((await refusal(readBody(post(new Uint8Array(65)), 64))).kind).toBe("too_large");
    expect((await refusal(readBody(post(countingStream(13, 65).stream), 64))).kind).toBe("too_large");
  });

  test("an empty body, and a request without one, read as zero bytes", async () => {
    expect((await readBody(post(null), 10)).byteLength).toBe(0);
    expect((await readBody(post(""), 10)).byteLength).toBe(0);
    expect((await readBody(post(new ReadableStream({ start: (c) => c.close() })), 10)).byteLength).toBe(0);
  });

  test("a body whose stream fails part-way (the connection dropped or timed out) is refused 400, not kept in part", async () => {
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 3) controller.enqueue(new Uint8Array(100));
        else controller.error(new Error("socket closed"));
      },
    });
    const e = await refusal(readBody(post(stream), 10_000));
    expect(e.kind).toBe("invalid_input");
    expect(e.detail).toBe("the body ended before its declared length");
    expect(toProblem(e).status).toBe(400);
  });
});

describe("readBody's time bound", () => {
  test("a body that has not all arrived within the bound is refused 408 and its stream is cancelled", async () => {
    const seen = { cancelled: false };
    // One byte, then nothing more: a client holding its request open.
    let sent = false;
    const stream = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (!sent) controller.enqueue(new Uint8Array([0x61]));
          sent = true;
        },
        cancel() {
          seen.cancelled = true;
        },
      },
      { highWaterMark: 0 },
    );
    const e = await refusal(readBody(post(stream), 10_000, 100));
    expect(e.kind).toBe("timeout");
    expect(toProblem(e).status).toBe(408);
    expect(seen.cancelled).toBe(true);
  });

  test("a body that arrives within the bound is read whole, and no timer is left behind", async () => {
    const { stream } = countingStream(100, 1000);
    expect((await readBody(post(stream), 10_000, 5_000)).byteLength).toBe(1000);
  });
});

describe("readBody over a real socket", () => {
  let server: Server<undefined>;
  const LIMIT = 4096;
  /** What each request's readBody came to, in arrival order: its size, or the refusal's kind. */
  const outcomes: string[] = [];
  let notify = () => {};
  /** Outcome number `i`, once the server has it (fails after 10 s). */
  const outcome = (i: number) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the server did not finish reading within 10 s")), 10_000);
      const check = () => {
        if (outcomes.length <= i) return void (notify = check);
        clearTimeout(timer);
        resolve(outcomes[i]!);
      };
      check();
    });

  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        try {
          // `/quick` reads with a short time bound, so a test can outlast it.
          const quick = new URL(request.url).pathname === "/quick";
          const body = await readBody(request, LIMIT, quick ? 300 : undefined);
          outcomes.push(String(body.byteLength));
          return Response.json({ size: body.byteLength, sum: body.reduce((a, b) => a + b, 0) });
        } catch (e) {
          outcomes.push((e as AppError).kind);
          return problemResponse(e, "/");
        } finally {
          notify();
        }
      },
    });
  });
  afterAll(() => server.stop(true));

  /** Send `head` and then each part, and resolve with the whole answer when the server closes or the deadline passes. */
  function exchange(head: string, parts: (string | Uint8Array)[], opts: { end?: boolean } = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(server.port!, "127.0.0.1");
      let answer = "";
      const deadline = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer within 10 s; so far: ${JSON.stringify(answer)}`));
      }, 10_000);
      socket.on("data", (d) => {
        answer += d.toString("latin1");
        // One answer is all these requests get: stop at the end of its body.
        const [headers, rest] = [
          answer.slice(0, answer.indexOf("\r\n\r\n")),
          answer.slice(answer.indexOf("\r\n\r\n") + 4),
        ];
        const length = /content-length: *(\d+)/i.exec(headers)?.[1];
        if (
          answer.includes("\r\n\r\n") &&
          length !== undefined &&
          Buffer.byteLength(rest, "latin1") >= Number(length)
        ) {
          clearTimeout(deadline);
          socket.destroy();
          resolve(answer);
        }
      });
      socket.on("close", () => {
        clearTimeout(deadline);
        resolve(answer);
      });
      socket.on("error", () => {});
      socket.write(head);
      for (const p of parts) socket.write(p);
      if (opts.end) socket.end();
    });
  }

  const statusOf = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
  const bodyOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));

  test("a Content-Length over the limit is answered 413 while the client has sent none of the body", async () => {
    const answer = await exchange(
      "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
      [],
    );
    expect(statusOf(answer)).toBe(413);
    expect(answer.toLowerCase()).toContain("content-type: application/problem+json");
    expect(bodyOf(answer)).toMatchObject({ status: 413, detail: `the body may have at most ${LIMIT} bytes` });
  });

  test("a chunked body within the limit is read whole", async () => {
    const chunk = "x".repeat(1000);
    const parts = [1, 2, 3].map(() => `${(1000).toString(16)}\r\n${chunk}\r\n`);
    const answer = await exchange("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", [
      ...parts,
      "0\r\n\r\n",
    ]);
    expect(statusOf(answer)).toBe(200);
    expect(bodyOf(answer)).toEqual({ size: 3000, sum: 3000 * 0x78 });
  });

  test("a chunked body over the limit is answered 413", async () => {
    const chunk = "x".repeat(1000);
    const parts = Array.from({ length: 8 }, () => `${(1000).toString(16)}\r\n${chunk}\r\n`);
    const answer = await exchange("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", [
      ...parts,
      "0\r\n\r\n",
    ]);
    expect(statusOf(answer)).toBe(413);
  });

  test("a client that closes part-way through its declared length is refused as a body that ended early, never read in part", async () => {
    const n = outcomes.length;
    await exchange("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n", ["x".repeat(10)], {
      end: true,
    });
    expect(await outcome(n)).toBe("invalid_input");
  });

  test("a client that sends part of its declared length and then nothing is answered 408 at the time bound", async () => {
    const n = outcomes.length;
    const answer = await exchange("POST /quick HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n", [
      "x".repeat(10),
    ]);
    expect(statusOf(answer)).toBe(408);
    expect(bodyOf(answer)).toMatchObject({ status: 408, title: "Request timeout" });
    expect(await outcome(n)).toBe("timeout");
  });

  test("a chunked body that stops coming is answered 408 at the time bound", async () => {
    const answer = await exchange("POST /quick HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", [
      "5\r\nhello\r\n",
    ]);
    expect(statusOf(answer)).toBe(408);
  });

  test("an empty body with Content-Length: 0 reads as zero bytes", async () => {
    const answer = await exchange("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", []);
    expect(statusOf(answer)).toBe(200);
    expect(bodyOf(answer)).toEqual({ size: 0, sum: 0 });
  });
});

describe("parsing what was read", () => {
  test("invalid JSON is a 400 problem that says so", () => {
    for (const text of ["{", '{"a":1,}', "nope", ""]) {
      let thrown: unknown;
      try {
        parseJsonBounded(text);
      } catch (e) {
        thrown = e;
      }
      const p = toProblem(thrown, "/v1/x");
      expect(p.status).toBe(400);
      expect(p.headers["content-type"]).toBe("application/problem+json");
      expect(p.body).toMatchObject({
        type: "https://agentowl.dev/problems/invalid-input",
        detail: "the body is not valid JSON",
      });
      expect(p.body.errors).toBeUndefined();
    }
  });

  test("JSON nested deeper than the bound is a 422 naming the depth, refused before JSON.parse runs", () => {
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    const parse = JSON.parse;
    let parsed = 0;
    JSON.parse = ((...args: Parameters<typeof JSON.parse>) => {
      parsed++;
      return parse(...args);
    }) as typeof JSON.parse;
    let thrown: unknown;
    try {
      parseJsonBounded(deep);
    } catch (e) {
      thrown = e;
    } finally {
      JSON.parse = parse;
    }
    expect(parsed).toBe(0);
    const p = toProblem(thrown);
    expect(p.status).toBe(422);
    expect(p.body.errors).toEqual([{ field: "/", message: `nested more than ${MAX_JSON_DEPTH} levels deep` }]);
  });

  test("JSON at the depth bound parses", () => {
    const atBound = `${"[".repeat(MAX_JSON_DEPTH)}1${"]".repeat(MAX_JSON_DEPTH)}`;
    expect(parseJsonBounded(atBound)).toBeArray();
    expect(parseJsonBounded('{"a":[1,{"b":null}]}')).toEqual({ a: [1, { b: null }] });
  });

  test("the depth scan ignores brackets inside strings, escaped quotes included", () => {
    expect(jsonNestsDeeper(`["${"[".repeat(100)}"]`, 2)).toBe(false);
    expect(jsonNestsDeeper(`["\\"${"{".repeat(100)}"]`, 2)).toBe(false);
    expect(jsonNestsDeeper("[[[1]]]", 2)).toBe(true);
    expect(jsonNestsDeeper("[[1],[2]]", 2)).toBe(false);
  });

  test("a body that is not UTF-8 is a 400 problem, and UTF-8 text comes back as it was sent", () => {
    let thrown: unknown;
    try {
      utf8(Uint8Array.from([0x7b, 0xff, 0x7d]));
    } catch (e) {
      thrown = e;
    }
    expect(toProblem(thrown)).toMatchObject({ status: 400, body: { detail: "the body is not valid UTF-8" } });
    expect(utf8(new TextEncoder().encode('{"name":"Zoë 🦉"}'))).toBe('{"name":"Zoë 🦉"}');
  });
});
