import { describe, expect, test } from "bun:test";
import { formatLogLine, type ServerSentEvent, serverSentEvents } from "./logs.ts";

/** The events of a stream that arrives in these chunks. */
async function parse(...chunks: string[]): Promise<ServerSentEvent[]> {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(encoder.encode(chunk));
      c.close();
    },
  });
  const out: ServerSentEvent[] = [];
  for await (const e of serverSentEvents(body)) out.push(e);
  return out;
}

describe("Server-Sent Events", () => {
  test("one event per blank line; comments and keep-alives are skipped", async () => {
    expect(await parse(": connected\n\n", 'data: {"a":1}\n\n', ": keep-alive\n\n", "data: two\n\n")).toEqual([
      { event: "message", data: '{"a":1}' },
      { event: "message", data: "two" },
    ]);
  });

  test("an event split across chunks, CRLF line ends, multi-line data, id and retry", async () => {
    expect(await parse("id: 7\r\nretry: 2000\r\nda", "ta: one\r\ndata:two\r", "\n\r\n")).toEqual([
      { event: "message", data: "one\ntwo", id: "7", retry: 2000 },
    ]);
  });

  test("an unfinished event at the end of the stream is dropped", async () => {
    expect(await parse("data: whole\n\ndata: half")).toEqual([{ event: "message", data: "whole" }]);
  });
});

describe("log lines for people", () => {
  test("time level msg key=value, strings quoted only when they need it", () => {
    expect(
      formatLogLine(
        JSON.stringify({
          time: "2026-11-21T14:02:11.043Z",
          level: "info",
          msg: "agentowl serving",
          http: "http://127.0.0.1:8080",
          note: "two words",
          n: 3,
          o: { a: 1 },
        }),
      ),
    ).toBe('2026-11-21T14:02:11.043Z info  agentowl serving http=http://127.0.0.1:8080 note="two words" n=3 o={"a":1}');
  });

  test("a line that is not JSON is shown as it is, control characters neutralized", () => {
    expect(formatLogLine("plain \u001b[2Jtext")).toBe("plain ?[2Jtext");
  });
});
