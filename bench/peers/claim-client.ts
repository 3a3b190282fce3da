/**
 * The agents bench's API client (bench/agents.ts), in a process of its own as a real client is:
 * the appliance's event loop then carries only the server's side of a claim (and the refill it
 * starts once it answered), not the client's parsing too. Takes `{url, token, path, body}` over
 * IPC, POSTs it, answers `{ms, status, text}` timed from before the request is written to the
 * whole body read.
 *
 * It writes HTTP/1.1 itself on one keep-alive connection per server, as the HTTP section's load
 * generator (autocannon) does: Bun's `fetch` hands every request to its HTTP thread and the answer
 * back, two thread wake-ups that cost 0.19 ms at p50 and 0.25 ms at p99 here after an idle gap
 * (measured against a bare Bun.serve, docs/performance.md): the client's time, not the appliance's.
 */
import type { Socket } from "bun";

interface Conn {
  socket: Socket<undefined>;
  buf: Buffer;
  waiting: ((r: { status: number; text: string } | Error) => void) | null;
}

const conns = new Map<string, Promise<Conn>>();

/** One answer from `buf`, when it is all there: HTTP/1.1 with a Content-Length (Bun.serve sends one). */
function takeAnswer(c: Conn): { status: number; text: string } | null {
  const end = c.buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const head = c.buf.subarray(0, end).toString("latin1");
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1];
  if (!status || length === undefined)
    throw new Error(`claim client: an answer without a status or Content-Length: ${head}`);
  const total = end + 4 + Number(length);
  if (c.buf.length < total) return null;
  const text = c.buf.subarray(end + 4, total).toString("utf8");
  c.buf = c.buf.subarray(total);
  return { status, text };
}

function connect(url: string): Promise<Conn> {
  let conn = conns.get(url);
  if (!conn) {
    const { hostname, port } = new URL(url);
    const c: Conn = { socket: undefined as never, buf: Buffer.alloc(0), waiting: null };
    const fail = (e: Error) => {
      conns.delete(url);
      const w = c.waiting;
      c.waiting = null;
      w?.(e);
    };
    conn = Bun.connect({
      hostname,
      port: Number(port),
      socket: {
        data(_s, chunk) {
          c.buf = c.buf.length ? Buffer.concat([c.buf, chunk]) : Buffer.from(chunk);
          try {
            const answer = takeAnswer(c);
            if (!answer) return;
            const w = c.waiting;
            c.waiting = null;
            w?.(answer);
          } catch (e) {
            fail(e as Error);
          }
        },
        close: () => fail(new Error("claim client: the server closed the connection")),
        error: (_s, e) => fail(e),
      },
    }).then((socket) => {
      socket.setNoDelay(true);
      c.socket = socket;
      return c;
    });
    conns.set(url, conn);
  }
  return conn;
}

async function post(url: string, path: string, token: string, body: string): Promise<{ status: number; text: string }> {
  const c = await connect(url);
  const { host } = new URL(url);
  const answer = new Promise<{ status: number; text: string } | Error>((resolve) => {
    c.waiting = resolve;
  });
  c.socket.write(
    `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  const r = await answer;
  if (r instanceof Error) throw r;
  return r;
}

process.on("message", async (m: { url: string; token: string; path: string; body: string }) => {
  try {
    await connect(m.url);
    const t0 = performance.now();
    const { status, text } = await post(m.url, m.path, m.token, m.body);
    process.send?.({ ms: performance.now() - t0, status, text });
  } catch (e) {
    process.send?.({ error: String(e) });
  }
});
process.send?.({ ready: true });
