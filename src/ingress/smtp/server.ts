import type { Socket } from "node:net";
import { hostname } from "node:os";
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from "smtp-server";
import { SMTPConnection as SMTPConnectionClass } from "smtp-server/lib/smtp-connection.js";
import type { Config } from "../../config/index.ts";
import { newId } from "../../core/ids.ts";
import type { Logger } from "../../core/log.ts";
import type { Metrics } from "../../core/metrics.ts";
import { RateLimiter } from "../rate-limit.ts";
import { isStorageUnavailable, toSmtp } from "../../errors/index.ts";
import { type Span, spanSince } from "../../events/envelope.ts";
import type { MailRecipient, SqliteStorage } from "../../store/index.ts";
import { RecipientDirectory } from "./recipients.ts";
import { type Spool, SpoolUnavailableError } from "./spool.ts";
import type { TlsMaterial } from "./tls.ts";

/**
 * The SMTP listener (docs/architecture.md#the-smtp-pipeline) on smtp-server: network and TLS, the session, recipient
 * validation, rate limits, and the durable hand-off (spool fsync, then the message row and its
 * processing job in one group commit) before `250 2.0.0 queued as <id>`. Parsing, sender
 * authentication and normalizing happen later, in the `mail.process` job (src/mail/process.ts).
 *
 * Every callback smtp-server calls goes through `guarded`: smtp-server answers a callback error
 * with `err.responseCode || 550` and echoes `err.message`, so an unexpected exception would
 * bounce the mail and leak its text. Only an SmtpReply is answered as it is; anything else is
 * logged and answered `451 4.3.0` (try again later), never a 5xx.
 */

export const MAIL_PROCESS_JOB = "mail.process";

/** A deliberate answer: the code, and the text starting with its enhanced status code. */
export class SmtpReply extends Error {
  override readonly name = "SmtpReply";
  constructor(
    readonly responseCode: number,
    enhanced: string,
    text: string,
    /** The stage and outcome for /metrics. */
    readonly outcome: string = "refused",
  ) {
    super(`${enhanced} ${text}`);
  }
}

/**
 * What a failure that is no deliberate SmtpReply is answered, from the one error model
 * (src/errors/to-smtp.ts): a storage failure 452 4.3.1, anything else 451 4.3.0, never a 5xx
 * (an exception is our failure, not the sender's, whatever kind it carries).
 */
function replyTo(e: unknown): SmtpReply {
  const storage = storageUnavailable(e);
  const a = toSmtp(storage ? e : undefined);
  return new SmtpReply(a.code, a.enhanced, a.text, storage ? "unavailable" : "error");
}
/** A storage failure the sender should retry later (452 4.3.1), as opposed to a bug (451 4.3.0): the one classifier (src/errors/). */
export const storageUnavailable = (e: unknown): boolean =>
  e instanceof SpoolUnavailableError || isStorageUnavailable(e);

/** A reply text that already carries its enhanced status code (`5.1.1 …`). */
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * The parts of smtp-server's connection this module reads or hooks (smtp-connection.js of the
 * pinned version): its command loop (`_onCommand`), its socket timeout (`_onTimeout`), and the
 * state that says whether the client or the appliance holds the session up.
 */
type SMTPConnection = SMTPConnectionClass & {
  session: SMTPServerSession;
  secure: boolean;
  remoteAddress: string;
  _ready: boolean;
  _upgrading: boolean;
  _closing: boolean;
  _closed: boolean;
  _handlerPending: boolean;
  _parser: { _dataMode: boolean } | false;
  _dataStream: unknown;
  _onCommand(command: Buffer, callback?: () => void): void;
  _onTimeout(): void;
  close(): void;
};
const SMTPConnection = SMTPConnectionClass as unknown as new (
  server: SMTPServer,
  socket: Socket,
  options: unknown,
) => SMTPConnection;

/** What this module adds to a smtp-server session. */
interface SessionState {
  started: number;
  counted: boolean;
  /** Recipients accepted in the current transaction, keyed by smtp-server's envelope object. */
  transactions: WeakMap<object, { recipients: MailRecipient[]; mailAt: number }>;
  /** Fires when the client goes away: a DATA read in progress stops waiting. */
  closed: AbortController;
  /** The connection this session runs on (set when it is accepted). */
  connection: SMTPConnection | null;
  /**
   * When (Date.now) the client last moved its session forward: the connect, its first EHLO/HELO
   * (again after STARTTLS), STARTTLS, an accepted MAIL or RCPT, the end of a DATA. The idle
   * budget counts from here; NOOP, RSET, HELP, VRFY and refused commands do not reset it.
   */
  progressAt: number;
  /** An EHLO/HELO was accepted since the connect (or since STARTTLS). */
  greeted: boolean;
  /** STARTTLS was asked for once (it counts as progress only once). */
  tlsAsked: boolean;
  /** Commands received on this connection. */
  commands: number;
  /** When the current message's DATA began, or null outside DATA. */
  dataStartedAt: number | null;
  /** The budget check's timer. */
  timer: ReturnType<typeof setTimeout> | null;
}

/** The name of a command line, upper-case (`MAIL FROM:<…>` → `MAIL`). */
const commandName = (line: Buffer | undefined) =>
  String(line ?? "")
    .split(" ", 1)[0]!
    .trim()
    .toUpperCase();
const HELLO = new Set(["EHLO", "HELO", "LHLO"]);
/** While the appliance, not the client, holds the session up: look again this soon. */
const RECHECK_MS = 1000;

export interface SmtpIngressDeps {
  config: Config;
  storage: SqliteStorage;
  spool: Spool;
  tls: TlsMaterial;
  log: Logger;
  metrics: Metrics;
}

export class SmtpIngress {
  readonly server: SMTPServer;
  private readonly sessions = new WeakMap<SMTPServerSession, SessionState>();
  private readonly perIp = new Map<string, number>();
  private readonly ipRate: RateLimiter;
  private readonly tenantRate: RateLimiter;
  private readonly recipients: RecipientDirectory;
  private readonly name: string;
  /** DATA transactions between the end of DATA and their reply. */
  private storing = 0;

  constructor(private readonly deps: SmtpIngressDeps) {
    const { config, tls } = deps;
    const limits = config.smtpLimits;
    this.ipRate = new RateLimiter(limits.ratePerIp);
    this.tenantRate = new RateLimiter(limits.ratePerTenant);
    this.recipients = new RecipientDirectory(deps.storage.resources, config.mailDomain);
    this.name = hostname();
    const ingress = this;
    // smtp-server waits a fixed 100 ms before every greeting (its early-talker check). The
    // appliance makes the pause a setting (smtp_greeting_delay) by starting connections itself;
    // and it writes enhanced status codes into its own replies, so smtp-server must not add
    // another in front of them. Both reach into smtp-server internals: the version is pinned
    // exactly, and test/e2e/smtp.test.ts checks the greeting delay and every reply line.
    // The idle budgets, the command limit and the shedding of idle connections (issue 16 item 7)
    // hook the connection's command loop and its timeout the same way (`watch`).
    const shedAbove = Math.floor((limits.maxConnections * limits.shedThreshold) / 100);
    class Server extends SMTPServer {
      override connect(socket: Socket, socketOptions: unknown): void {
        const connection = new SMTPConnection(this, socket, socketOptions);
        const send = connection.send.bind(connection);
        connection.send = (code, data, context) =>
          send(code, data, typeof data === "string" && ENHANCED.test(data) ? false : context);
        const self = this as unknown as {
          connections: Set<SMTPConnection>;
          _onError(e: Error): void;
          _onClientConnect(d: unknown): void;
        };
        self.connections.add(connection);
        connection.on("error", (err: Error) => self._onError(err));
        connection.on("connect", (data: unknown) => self._onClientConnect(data));
        ingress.watch(connection);
        connection._setListeners(() => {
          if (self.connections.size > shedAbove) ingress.shed(connection, self.connections);
          if (self.connections.size > limits.maxConnections) {
            ingress.count("connect", "too_many");
            return connection.send(421, `4.7.0 ${ingress.name} too many connections; try again later`);
          }
          if (limits.greetingDelayMs > 0)
            setTimeout(() => connection.connectionReady(), limits.greetingDelayMs).unref();
          else connection.connectionReady();
        });
      }
    }
    this.server = new Server({
      name: this.name,
      banner: "AgentOwl",
      key: tls.key,
      cert: tls.cert,
      size: limits.maxMessageBytes,
      maxRecipients: limits.maxRecipients,
      socketTimeout: limits.idleTimeoutMs,
      closeTimeout: config.shutdownTimeoutMs,
      // Inbound port: no AUTH, no relaying; no reverse DNS on the accept path (SPF uses the IP).
      disabledCommands: ["AUTH"],
      authOptional: true,
      disableReverseLookup: true,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      logger: false,
      onConnect: this.guarded("connect", (session) => this.onConnect(session)),
      onSecure: this.guarded("tls", async (_socket: unknown, _session: SMTPServerSession) => {}),
      onMailFrom: this.guarded("mail", (address: SMTPServerAddress, session) => this.onMailFrom(address, session)),
      onRcptTo: this.guarded("rcpt", (address: SMTPServerAddress, session) => this.onRcptTo(address, session)),
      onData: this.guarded("data", (stream: SMTPServerDataStream, session) => this.onData(stream, session)),
      onClose: (session) => this.onClose(session),
    });
    this.server.on("error", (err) =>
      deps.log.warn("smtp connection error", {
        error: (err as Error).message,
        code: (err as NodeJS.ErrnoException).code,
      }),
    );
  }

  /** Listen; resolves with the bound port (0 in the settings picks a free one). */
  listen(): Promise<number> {
    const { host, port } = this.deps.config.smtp;
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.server.off("error", onError);
        resolve((this.server.server.address() as { port: number }).port);
      });
    });
  }

  /**
   * Stop accepting; let messages whose DATA is being stored finish (until `deadline`), then end
   * every session with `421 4.3.2`. An idle session does not hold the shutdown up: its client
   * retries later, as SMTP clients do.
   */
  async close(deadline = Date.now() + this.deps.config.shutdownTimeoutMs): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    while (this.storing > 0 && Date.now() < deadline) await Bun.sleep(10);
    for (const c of (this.server as unknown as { connections: Set<SMTPConnection> }).connections) {
      c.send(421, "4.3.2 the service is shutting down; try again later");
      c.close();
    }
    await closed;
  }

  private count(stage: string, outcome: string, since?: number): void {
    this.deps.metrics.smtpStages.inc({ stage, outcome });
    if (since !== undefined) this.deps.metrics.smtpStageSeconds.observe({ stage }, (performance.now() - since) / 1000);
  }

  /**
   * Wrap one of smtp-server's callbacks: the handler's return value becomes the callback's
   * message, an SmtpReply its answer, anything else a logged `451 4.3.0` (or `452 4.3.1` when
   * the disk or database cannot take writes).
   */
  private guarded<A extends unknown[]>(stage: string, handler: (...args: A) => Promise<string | void>) {
    return (...args: [...A, (err?: Error | null, message?: string) => void]) => {
      const callback = args.pop() as (err?: Error | null, message?: string) => void;
      const started = performance.now();
      let answered = false;
      const answer = (err: Error | null, message?: string) => {
        if (answered) return;
        answered = true;
        callback(err, message);
      };
      Promise.resolve()
        .then(() => handler(...(args as unknown as A)))
        .then(
          (message) => {
            this.count(stage, "ok", started);
            answer(null, message ?? undefined);
          },
          (e: unknown) => {
            if (e instanceof SmtpReply) {
              this.count(stage, e.outcome, started);
              return answer(e);
            }
            const reply = replyTo(e);
            this.count(stage, reply.outcome, started);
            this.deps.log.error("smtp stage failed", {
              stage,
              error: e instanceof Error ? e.message : String(e),
              code: (e as { code?: unknown })?.code,
            });
            answer(reply);
          },
        );
    };
  }

  private state(session: SMTPServerSession): SessionState {
    let s = this.sessions.get(session);
    if (!s) {
      s = {
        started: performance.now(),
        counted: false,
        transactions: new WeakMap(),
        closed: new AbortController(),
        connection: null,
        progressAt: Date.now(),
        greeted: false,
        tlsAsked: false,
        commands: 0,
        dataStartedAt: null,
        timer: null,
      };
      this.sessions.set(session, s);
    }
    return s;
  }

  /**
   * Bound what one connection may hold (issue 16 item 7): until its first EHLO/HELO
   * (smtp_greeting_timeout), between transaction commands (smtp_idle_timeout, which NOOP, RSET,
   * HELP, VRFY and refused commands do not reset), a whole DATA (smtp_data_timeout; the gaps
   * between its chunks are smtp-server's own socket timeout, set to smtp_idle_timeout), and its
   * number of commands since its last accepted message (smtp_max_commands). While the appliance owes the client an answer (a
   * callback pending, a message being stored) nothing times out.
   */
  watch(connection: SMTPConnection): void {
    const s = this.state(connection.session);
    s.connection = connection;
    const limits = this.deps.config.smtpLimits;
    const onCommand = connection._onCommand.bind(connection);
    connection._onCommand = (line, callback) => {
      if (++s.commands > limits.maxCommands) {
        this.count("session", "too_many_commands");
        return connection.send(421, `4.7.0 ${this.name} too many commands on one connection; reconnect to go on`);
      }
      const name = commandName(line);
      if (name === "STARTTLS" && !s.tlsAsked && !connection.secure && connection._ready) {
        // The client greets again over TLS: its first EHLO there counts too.
        s.tlsAsked = true;
        s.greeted = false;
        this.progress(s);
      }
      const greeting = HELLO.has(name) && !s.greeted && connection._ready;
      onCommand(line, () => {
        if (greeting && !s.greeted && connection.session.hostNameAppearsAs) {
          s.greeted = true;
          this.progress(s);
        }
        callback?.();
      });
    };
    const onTimeout = connection._onTimeout.bind(connection);
    // smtp-server's socket timeout (any byte resets it): what remains for it are the gaps in DATA.
    connection._onTimeout = () => {
      const c = connection;
      if (c._closing || c._handlerPending || (c._dataStream && c._parser && !c._parser._dataMode)) return onTimeout();
      if (c._dataStream) this.timeOut(s, "data", "no data for too long");
      else this.timeOut(s, s.greeted ? "idle" : "greeting");
    };
    this.schedule(s);
  }

  /** The client moved its session forward: its idle budget starts again. */
  private progress(s: SessionState): void {
    s.progressAt = Date.now();
    this.schedule(s);
  }

  /** (Re)arm the budget check for the session's current deadline. */
  private schedule(s: SessionState): void {
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
    const c = s.connection;
    if (!c || c._closing || c._closed) return;
    const limits = this.deps.config.smtpLimits;
    const now = Date.now();
    let deadline: number;
    let phase: string;
    if (c._dataStream && c._parser && c._parser._dataMode) {
      deadline = (s.dataStartedAt ?? now) + limits.dataTimeoutMs;
      phase = "data";
    } else if (c._dataStream || c._handlerPending) {
      // The appliance holds the session up (a callback, storing a message): not the client's time.
      deadline = now + RECHECK_MS;
      phase = "";
    } else {
      deadline = s.progressAt + (s.greeted ? limits.idleTimeoutMs : limits.greetingTimeoutMs);
      phase = s.greeted ? "idle" : "greeting";
    }
    if (phase && deadline <= now) return this.timeOut(s, phase);
    s.timer = setTimeout(() => {
      s.timer = null;
      this.schedule(s);
    }, deadline - now);
    s.timer.unref?.();
  }

  private timeOut(s: SessionState, phase: string, text?: string): void {
    const c = s.connection;
    if (!c || c._closing || c._closed) return;
    this.count("session", `timeout_${phase}`);
    const what =
      text ??
      (phase === "data"
        ? "the message is taking too long"
        : phase === "greeting"
          ? "no EHLO or HELO in time"
          : "idle too long");
    c.send(421, `4.4.2 ${this.name} ${what}; closing connection`);
  }

  /**
   * The listener is nearly full (above smtp_shed_threshold of smtp_max_connections): close one
   * connection that holds no transaction (no accepted RCPT, not in DATA, no answer pending), so
   * that idle connections cannot keep new senders out. One that has not even given MAIL FROM goes
   * before one that has; then the one whose address holds the most connections; then the one
   * idle longest. A connection from an address at its own cap sheds nothing: it is refused.
   */
  shed(arrival: SMTPConnection, connections: Set<SMTPConnection>): void {
    const limits = this.deps.config.smtpLimits;
    if ((this.perIp.get(arrival.remoteAddress) ?? 0) >= limits.maxConnectionsPerIp) return;
    let victim: SMTPConnection | null = null;
    let best: [number, number, number] | null = null;
    for (const c of connections) {
      if (c === arrival || c._closing || c._closed || !c._ready || c._upgrading || c._handlerPending || c._dataStream)
        continue;
      const envelope = c.session.envelope;
      if (envelope?.rcptTo?.length) continue;
      const key: [number, number, number] = [
        envelope?.mailFrom ? 1 : 0,
        -(this.perIp.get(c.remoteAddress) ?? 0),
        this.sessions.get(c.session)?.progressAt ?? 0,
      ];
      if (
        !best ||
        key[0] < best[0] ||
        (key[0] === best[0] && (key[1] < best[1] || (key[1] === best[1] && key[2] < best[2])))
      ) {
        best = key;
        victim = c;
      }
    }
    if (!victim) return;
    this.count("session", "shed");
    victim.send(421, `4.7.0 ${this.name} too many connections; closing idle ones, try again later`);
  }

  private async onConnect(session: SMTPServerSession): Promise<void> {
    const s = this.state(session);
    const ip = session.remoteAddress;
    const open = this.perIp.get(ip) ?? 0;
    if (open >= this.deps.config.smtpLimits.maxConnectionsPerIp) {
      throw new SmtpReply(421, "4.7.0", "too many connections from your address; try again later", "too_many");
    }
    this.perIp.set(ip, open + 1);
    s.counted = true;
    this.deps.metrics.smtpConnections.inc();
  }

  private onClose(session: SMTPServerSession): void {
    const s = this.sessions.get(session);
    if (!s) return;
    s.closed.abort();
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
    if (s.counted) {
      s.counted = false;
      const ip = session.remoteAddress;
      const left = (this.perIp.get(ip) ?? 1) - 1;
      if (left > 0) this.perIp.set(ip, left);
      else this.perIp.delete(ip);
      this.deps.metrics.smtpConnections.dec();
    }
  }

  private async onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    if (!this.ipRate.take(session.remoteAddress)) {
      throw new SmtpReply(421, "4.7.0", "too many messages from your address; try again later", "rate_limited");
    }
    const s = this.state(session);
    s.transactions.set(session.envelope, { recipients: [], mailAt: Date.now() });
    this.progress(s);
  }

  private async onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const recipient = await this.recipients.resolve(address.address);
    if (!recipient) throw new SmtpReply(550, "5.1.1", `<${address.address}>: no such recipient here`);
    if (!this.tenantRate.take(recipient.tenant)) {
      throw new SmtpReply(
        451,
        "4.7.1",
        `<${address.address}>: too much mail for this recipient right now; try again later`,
        "rate_limited",
      );
    }
    const s = this.state(session);
    const txn = s.transactions.get(session.envelope);
    if (!txn) throw new Error("RCPT without a transaction");
    const same = txn.recipients.findIndex((r) => r.address.toLowerCase() === recipient.address.toLowerCase());
    if (same >= 0) txn.recipients[same] = recipient;
    else txn.recipients.push(recipient);
    this.progress(s);
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const s = this.state(session);
    s.dataStartedAt = Date.now();
    this.schedule(s);
    this.storing++;
    try {
      const queued = await this.store(stream, session);
      // A message accepted starts the command budget again: it bounds the commands a client may
      // send without delivering anything (NOOP, RSET, refused RCPT loops), not a relay that sends
      // a thousand messages over one cached connection.
      s.commands = 0;
      return queued;
    } finally {
      this.storing--;
      s.dataStartedAt = null;
      // The whole message came in (whatever its answer): the client's budget starts again.
      this.progress(s);
    }
  }

  private async store(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const s = this.state(session);
    const txn = s.transactions.get(session.envelope);
    if (!txn || !txn.recipients.length) throw new Error("DATA without recipients");
    const max = this.deps.config.smtpLimits.maxMessageBytes;
    const dataStarted = performance.now();
    const receivedAt = Date.now();
    const raw = await readMessage(stream, max, s.closed.signal);
    if (!raw || stream.sizeExceeded) {
      // smtp-server itself answers 552 5.3.4 for an oversized message; this is its fallback.
      throw new SmtpReply(552, "5.3.4", `message exceeds the maximum size of ${max} bytes`, "too_big");
    }
    const trace: Span[] = [spanSince("smtp.data", receivedAt, dataStarted, "ok", `${raw.length} bytes`)];

    const spoolStarted = performance.now();
    let spooled;
    try {
      spooled = await this.deps.spool.append(raw);
    } catch (e) {
      this.count("spool", storageUnavailable(e) ? "unavailable" : "error", spoolStarted);
      throw e;
    }
    this.count("spool", "ok", spoolStarted);
    trace.push(spanSince("spool.write", Date.now() - (performance.now() - spoolStarted), spoolStarted));

    const id = newId("msg", receivedAt);
    const commitStarted = performance.now();
    const { storage } = this.deps;
    try {
      await storage.committer.run((tx) => {
        storage.mail.insertTx(tx, {
          id,
          receivedAt,
          remoteIp: session.remoteAddress,
          helo: session.hostNameAppearsAs ?? "",
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          recipients: txn.recipients,
          tls: session.secure,
          size: raw.length,
          spool: spooled,
          trace: [...trace, spanSince("ingress.commit", Date.now(), commitStarted)],
        });
        storage.queue.enqueueTx(tx, { kind: MAIL_PROCESS_JOB, payload: { id } });
      });
    } catch (e) {
      this.count("commit", storageUnavailable(e) ? "unavailable" : "error", commitStarted);
      throw e;
    }
    this.count("commit", "ok", commitStarted);
    this.deps.log.info("mail queued", {
      queue_id: id,
      remote_ip: session.remoteAddress,
      size: raw.length,
      recipients: txn.recipients.length,
      tls: session.secure,
    });
    return `2.0.0 queued as ${id}`;
  }
}

/**
 * The message body; null when it is over `max` bytes (the rest is read and dropped, so the
 * client gets its 552 at the end of DATA rather than a broken pipe). Rejects when the client
 * goes away before the end of DATA: nothing has been written then.
 */
function readMessage(stream: SMTPServerDataStream, max: number, closed: AbortSignal): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = () => reject(new SmtpReply(421, "4.4.2", "connection closed during DATA", "aborted"));
    if (closed.aborted) return onAbort();
    closed.addEventListener("abort", onAbort, { once: true });
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) chunks.push(chunk);
    });
    stream.once("error", (e) => {
      closed.removeEventListener("abort", onAbort);
      reject(e);
    });
    stream.once("end", () => {
      closed.removeEventListener("abort", onAbort);
      resolve(size > max ? null : Buffer.concat(chunks, size));
    });
  });
}
