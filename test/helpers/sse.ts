/**
 * A Server-Sent Events client over fetch, as a browser's EventSource reads the stream: messages
 * (`event:` and `data:` lines up to a blank line) and comments (`: …`), each with when it arrived.
 */
export interface SseMessage {
  event: string;
  data: string;
  /** performance.now() when it was read. */
  at: number;
}

export class SseClient {
  readonly messages: SseMessage[] = [];
  readonly comments: string[] = [];
  /** The server ended the stream (or the connection broke). */
  ended = false;
  private readonly waiters = new Set<() => void>();
  private readonly reader: { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(): Promise<void> };

  constructor(readonly response: Response) {
    this.reader = response.body!.getReader();
    void this.pump();
  }

  private async pump(): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { done, value } = await this.reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          this.take(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf("\n\n");
        }
        this.wake();
      }
    } catch {
      // cancelled or broken: ended either way
    }
    this.ended = true;
    this.wake();
  }

  private take(block: string): void {
    let event = "message";
    const data: string[] = [];
    let isMessage = false;
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) this.comments.push(line.slice(1).trim());
      else if (line.startsWith("event:")) {
        event = line.slice(6).trim();
        isMessage = true;
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).trimStart());
        isMessage = true;
      }
    }
    if (isMessage) this.messages.push({ event, data: data.join("\n"), at: performance.now() });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves once `check` holds (checked at every read), rejects after `timeoutMs`. */
  until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** The first message named `event` whose data satisfies `match`, from index `from` on. */
  find(event: string, match: (data: unknown) => boolean = () => true, from = 0): SseMessage | undefined {
    return this.messages.slice(from).find((m) => m.event === event && match(JSON.parse(m.data)));
  }

  close(): Promise<void> {
    return this.reader.cancel().catch(() => {});
  }
}
