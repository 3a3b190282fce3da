import type { Socket } from "node:net";
import { hostname } from "node:os";
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from "smtp-server";
import { SMTPConnection as SMTPConnectionClass } from "smtp-server/lib/smtp-connection.js";
import type { Config } from "../../config/index.ts";
import { type Clock, systemClock } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import type { Metrics } from "../../core/metrics.ts";
import type { Storage } from "../../store/index.ts";
import { AcceptStage, type ReserveJob } from "./accept.ts";
import { DataStage } from "./data.ts";
import { type CountStage, guard, stageCounter } from "./guard.ts";
import { type AgentAddresses, RecipientStage } from "./recipients.ts";
import {
  budgetOf,
  type Holder,
  type SessionState,
  Sessions,
  type SMTPConnection,
  type SMTPConnectionConstructor,
} from "./session.ts";
import type { MessageSpool } from "./spool.ts";
import type { TlsMaterial } from "./tls.ts";

/**
 * The SMTP listener (docs/architecture.md#the-smtp-pipeline) on smtp-server: the network and TLS,
 * the connection limits, the idle budgets and the shedding of idle connections, and the wiring of
 * every smtp-server callback, through the one guard (guard.ts), to its stage: the session
 * (session.ts), RCPT (recipients.ts), DATA (data.ts), then the durable hand-off (accept.ts)
 * before `250 2.0.0 queued as <id>`.
 */

/** A reply text that already carries its enhanced status code (`5.1.1 …`). */
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

const SMTPConnection = SMTPConnectionClass as unknown as SMTPConnectionConstructor;

export interface SmtpIngressDeps {
  config: Config;
  storage: Storage;
  spool: MessageSpool;
  tls: TlsMaterial;
  log: Logger;
  metrics: Metrics;
  /** The clock the budgets, rate limits and timestamps read (default: the system's). */
  clock?: Clock;
  /** Addresses of agents' active email tools (the agent pool's), accepted besides the bindings'. */
  agentAddresses?: AgentAddresses;
  /** A place in this node's job runner for an accepted message's job (AcceptStage). */
  reserveJob?: ReserveJob;
}

export class SmtpIngress {
  readonly server: SMTPServer;
  private readonly sessions: Sessions;
  private readonly recipients: RecipientStage;
  private readonly data: DataStage;
  private readonly accept: AcceptStage;
  private readonly count: CountStage;
  private readonly clock: Clock;
  private readonly name: string;
  /** DATA transactions between the end of DATA and their reply. */
  private storing = 0;

  constructor(private readonly deps: SmtpIngressDeps) {
    const { config, tls, log } = deps;
    const limits = config.smtpLimits;
    const clock = (this.clock = deps.clock ?? systemClock);
    const count = (this.count = stageCounter(deps.metrics));
    this.name = hostname();
    this.sessions = new Sessions({
      limits,
      metrics: deps.metrics,
      clock,
      count,
      name: this.name,
      rearm: (s) => this.schedule(s),
    });
    this.recipients = new RecipientStage({
      resources: deps.storage.resources,
      mailDomain: config.mailDomain,
      ratePerTenant: limits.ratePerTenant,
      clock,
      agentAddresses: deps.agentAddresses,
    });
    this.data = new DataStage({ spool: deps.spool, maxMessageBytes: limits.maxMessageBytes, clock, count });
    this.accept = new AcceptStage({ storage: deps.storage, reserve: deps.reserveJob, clock, count, log });
    const ingress = this;
    // smtp-server waits a fixed 100 ms before every greeting (its early-talker check). The
    // appliance makes the pause a setting (smtp_greeting_delay) by starting connections itself;
    // and it writes enhanced status codes into its own replies, so smtp-server must not add
    // another in front of them. Both reach into smtp-server internals: the version is pinned
    // exactly, and test/e2e/smtp.test.ts checks the greeting delay and every reply line.
    // The idle budgets, the command limit and the shedding of idle connections hook the
    // connection's command loop and its timeout the same way (`watch`).
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
    const guarded = { count, log };
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
      onConnect: guard(guarded, "connect", (session: SMTPServerSession) => this.sessions.onConnect(session)),
      onSecure: guard(guarded, "tls", async (_socket: unknown, _session: SMTPServerSession) => {}),
      onMailFrom: guard(guarded, "mail", (address: SMTPServerAddress, session: SMTPServerSession) =>
        this.sessions.onMailFrom(address, session),
      ),
      onRcptTo: guard(guarded, "rcpt", async (address: SMTPServerAddress, session: SMTPServerSession) =>
        this.sessions.addRecipient(session, await this.recipients.check(address.address)),
      ),
      onData: guard(guarded, "data", (stream: SMTPServerDataStream, session: SMTPServerSession) =>
        this.onData(stream, session),
      ),
      onClose: (session) => this.sessions.onClose(session),
    });
    this.server.on("error", (err) =>
      log.warn("smtp connection error", {
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
  async close(deadline = this.clock.now() + this.deps.config.shutdownTimeoutMs): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // A bounded wait on a condition (the messages being stored), looked at every 10 ms: no
    // event says "the last one is stored" without threading one through every DATA path.
    while (this.storing > 0 && this.clock.now() < deadline) await Bun.sleep(10);
    for (const c of (this.server as unknown as { connections: Set<SMTPConnection> }).connections) {
      c.send(421, "4.3.2 the service is shutting down; try again later");
      c.close();
    }
    await closed;
  }

  /** DATA: read and spool the message, commit it; the client's budgets start again whatever the answer. */
  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const s = this.sessions.state(session);
    this.sessions.dataStarted(s);
    this.storing++;
    let accepted = false;
    try {
      const message = await this.data.receive(stream, this.sessions.transaction(session), s.closed.signal);
      const queued = await this.accept.commit(message, session);
      accepted = true;
      return queued;
    } finally {
      this.storing--;
      this.sessions.dataEnded(s, accepted);
    }
  }

  /**
   * Bound what one connection may hold: until its first EHLO/HELO (smtp_greeting_timeout),
   * between transaction commands (smtp_idle_timeout, which NOOP, RSET, HELP, VRFY and refused
   * commands do not reset), a whole DATA (smtp_data_timeout; the gaps between its chunks are
   * smtp-server's own socket timeout, set to smtp_idle_timeout), and its number of commands
   * since its last accepted message (smtp_max_commands, in session.ts). While the appliance owes
   * the client an answer (a callback pending, a message being stored) nothing times out.
   */
  watch(connection: SMTPConnection): void {
    const s = this.sessions.attach(connection);
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

  /** (Re)arm the budget check for the session's current deadline. */
  private schedule(s: SessionState): void {
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
    const c = s.connection;
    if (!c || c._closing || c._closed) return;
    const now = this.clock.now();
    const { phase, deadline } = budgetOf(s, holderOf(c), this.deps.config.smtpLimits, now);
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
    if (this.sessions.openFrom(arrival.remoteAddress) >= limits.maxConnectionsPerIp) return;
    let victim: SMTPConnection | null = null;
    let best: [number, number, number] | null = null;
    for (const c of connections) {
      if (c === arrival || c._closing || c._closed || !c._ready || c._upgrading || c._handlerPending || c._dataStream)
        continue;
      const envelope = c.session.envelope;
      if (envelope?.rcptTo?.length) continue;
      const key: [number, number, number] = [
        envelope?.mailFrom ? 1 : 0,
        -this.sessions.openFrom(c.remoteAddress),
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
}

/** Who holds the session up, from smtp-server's connection state. */
function holderOf(c: SMTPConnection): Holder {
  if (c._dataStream && c._parser && c._parser._dataMode) return "data";
  if (c._dataStream || c._handlerPending) return "appliance";
  return "client";
}
