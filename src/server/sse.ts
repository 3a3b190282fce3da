/**
 * A Server-Sent Events stream over one subscription: what the API's log tail and the console's
 * log page send. `open` subscribes and returns its unsubscribe; the stream pings every `pingMs`,
 * ends when the client goes (abort or cancel) or when the source ends (`close`), and drops a
 * client that falls more than `maxBacklog` messages behind rather than buffering for it.
 */
export function sseStream(
  request: Request,
  opts: {
    pingMs: number;
    /** The comment line a ping sends (default `ping`). */
    ping?: string;
    maxBacklog: number;
    open(send: (text: string) => void, close: () => void): () => void;
  },
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let stop = () => {};
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const close = () => {
        stop();
        try {
          controller.close();
        } catch {
          // already closed by the client
        }
      };
      const send = (text: string) => {
        if ((controller.desiredSize ?? 0) < -opts.maxBacklog) return close();
        controller.enqueue(encoder.encode(text));
      };
      const unsubscribe = opts.open(send, close);
      const ping = setInterval(() => send(`: ${opts.ping ?? "ping"}\n\n`), opts.pingMs);
      let stopped = false;
      stop = () => {
        if (stopped) return;
        stopped = true;
        clearInterval(ping);
        unsubscribe();
      };
      request.signal.addEventListener("abort", () => stop());
      send(": connected\n\n");
    },
    cancel() {
      stop();
    },
  });
}
