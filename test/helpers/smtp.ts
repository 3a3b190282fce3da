import { dirname } from "node:path";
import { connect, type Socket } from "node:net";

/** One SMTP reply: its code and its lines (without the code), as the server wrote them. */
export interface Reply {
  code: number;
  lines: string[];
  /** The whole reply, lines joined by \n, as written (`250-…\n250 …`). */
  raw: string;
}

/**
 * A raw SMTP client for tests: write exactly the bytes a dialogue needs (bare LFs, pipelined
 * commands, a DATA cut short) and read the replies one by one.
 */
export class SmtpDialogue {
  private buffer = "";
  private readonly replies: Reply[] = [];
  private waiting: ((r: Reply | null) => void) | null = null;
  private ended = false;
  private readonly ending = Promise.withResolvers<void>();

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      this.parse();
    });
    socket.on("close", () => {
      this.ended = true;
      this.ending.resolve();
      this.waiting?.(null);
      this.waiting = null;
    });
    socket.on("error", () => {});
  }

  /**
   * Connect; with `greeting: false` nothing is read (to talk before the greeting). `from` is the
   * local address to connect from (any of 127.0.0.0/8 on Linux: a test's "other client address").
   */
  static async open(
    port: number,
    opts: { host?: string; greeting?: boolean; from?: string } = {},
  ): Promise<{ smtp: SmtpDialogue; greeting: Reply | null }> {
    const socket = connect({ host: opts.host ?? "127.0.0.1", port, ...(opts.from ? { localAddress: opts.from } : {}) });
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const smtp = new SmtpDialogue(socket);
    return { smtp, greeting: opts.greeting === false ? null : await smtp.reply() };
  }

  private parse(): void {
    for (;;) {
      const lines: string[] = [];
      let rest = this.buffer;
      let done = false;
      while (!done) {
        const nl = rest.indexOf("\r\n");
        if (nl < 0) return;
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 2);
        lines.push(line);
        done = line[3] !== "-";
      }
      this.buffer = rest;
      const reply: Reply = {
        code: Number(lines[0]!.slice(0, 3)),
        lines: lines.map((l) => l.slice(4)),
        raw: lines.join("\n"),
      };
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(reply);
      } else this.replies.push(reply);
    }
  }

  /** The next reply; rejects when the server closes the connection first, or after `ms`. */
  reply(ms = 10_000): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(new Error("the server closed the connection"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`no reply within ${ms} ms`));
      }, ms);
      this.waiting = (r) => {
        clearTimeout(timer);
        if (r) resolve(r);
        else reject(new Error("the server closed the connection"));
      };
    });
  }

  write(data: string | Uint8Array): void {
    this.socket.write(data);
  }

  /** Send one command line (CRLF added) and read its reply. */
  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** EHLO, MAIL FROM, each RCPT TO, DATA, the message (dot-stuffed here), `.`; every reply. */
  async sendMail(
    from: string,
    to: string[],
    message: string,
    mailParams = "",
  ): Promise<{ mail: Reply; rcpts: Reply[]; data: Reply | null; end: Reply | null }> {
    const mail = await this.command(`MAIL FROM:<${from}>${mailParams}`);
    const rcpts: Reply[] = [];
    for (const r of to) rcpts.push(await this.command(`RCPT TO:<${r}>`));
    if (!rcpts.some((r) => r.code === 250)) return { mail, rcpts, data: null, end: null };
    const data = await this.command("DATA");
    if (data.code !== 354) return { mail, rcpts, data, end: null };
    const body = message.replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..");
    this.write(`${body}${body.endsWith("\r\n") ? "" : "\r\n"}.\r\n`);
    return { mail, rcpts, data, end: await this.reply() };
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Wait until the server closes the connection. */
  async closedByServer(ms = 5000): Promise<boolean> {
    let timer: Timer | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, ms)));
    await Promise.race([this.ending.promise, late]);
    clearTimeout(timer);
    return this.ended;
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * An appliance for SMTP tests: loopback listeners on free ports, no greeting delay, and DNS that
 * never answers (verdicts that need DNS are temperror, quickly); `env` adds or overrides settings.
 */
export async function startSmtpAppliance(
  dataDir: string,
  bootstrapToken: string,
  env: Record<string, string> = {},
  sink: (line: string) => void = () => {},
  level: "debug" | "warn" = "debug",
) {
  const { startApp } = await import("../../src/app/app.ts");
  const { loadConfig } = await import("../../src/config/index.ts");
  const { createLogger, Redactor } = await import("../../src/core/log.ts");
  const config = loadConfig({
    env: {
      AGENTOWL_DATA_DIR: dataDir,
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_BOOTSTRAP_TOKEN: bootstrapToken,
      AGENTOWL_SMTP_GREETING_DELAY: "0ms",
      AGENTOWL_DNS_SERVERS: "127.0.0.1:9",
      AGENTOWL_DNS_TIMEOUT: "200ms",
      ...env,
    },
    cwd: dirname(dataDir),
  });
  return startApp({ config, log: createLogger({ level, redactor: new Redactor(), sink }) });
}
