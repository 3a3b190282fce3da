import type { Socket } from "node:net";
import type { SMTPServer, SMTPServerAddress, SMTPServerSession } from "smtp-server";
import type { SMTPConnection as SMTPConnectionClass } from "smtp-server/lib/smtp-connection.js";
import type { Config } from "../../config/index.ts";
import type { Clock } from "../../core/clock.ts";
import type { Metrics } from "../../core/metrics.ts";
import type { MailRecipient } from "../../store/index.ts";
import { RateLimiter } from "../rate-limit.ts";
import { type CountStage, SmtpReply } from "./guard.ts";

/**
 * One SMTP connection's state (docs/architecture.md#the-smtp-pipeline): the per-address
 * connection count, the transaction MAIL opens (with the per-client rate limit), the recipients
 * RCPT adds to it, and what the idle budgets count from (the client's last progress, whether it
 * has greeted, when its DATA began). RSET and a repeated EHLO/HELO need nothing here:
 * smtp-server replaces the session's envelope, and the transaction, keyed by that envelope, goes
 * with it; neither counts as progress.
 */

/**
 * The parts of smtp-server's connection the listener and the session read or hook
 * (smtp-connection.js of the pinned version): its command loop (`_onCommand`), its socket
 * timeout (`_onTimeout`), and the state that says whether the client or the appliance holds the
 * session up.
 */
export type SMTPConnection = SMTPConnectionClass & {
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
export type SMTPConnectionConstructor = new (server: SMTPServer, socket: Socket, options: unknown) => SMTPConnection;

/** The recipients accepted since MAIL, and when MAIL came. */
export interface Transaction {
  recipients: MailRecipient[];
  mailAt: number;
}

/** What this module adds to a smtp-server session. */
export interface SessionState {
  started: number;
  counted: boolean;
  /** Recipients accepted in the current transaction, keyed by smtp-server's envelope object. */
  transactions: WeakMap<object, Transaction>;
  /** Fires when the client goes away: a DATA read in progress stops waiting. */
  closed: AbortController;
  /** The connection this session runs on (set when it is accepted). */
  connection: SMTPConnection | null;
  /**
   * When (clock.now()) the client last moved its session forward: the connect, its first
   * EHLO/HELO (again after STARTTLS), STARTTLS, an accepted MAIL or RCPT, the end of a DATA. The
   * idle budget counts from here; NOOP, RSET, HELP, VRFY and refused commands do not reset it.
   */
  progressAt: number;
  /** An EHLO/HELO was accepted since the connect (or since STARTTLS). */
  greeted: boolean;
  /** STARTTLS was asked for once (it counts as progress only once). */
  tlsAsked: boolean;
  /** Commands received on this connection since its last accepted message. */
  commands: number;
  /** When the current message's DATA began, or null outside DATA. */
  dataStartedAt: number | null;
  /** The budget check's timer. */
  timer: ReturnType<typeof setTimeout> | null;
}

type Limits = Config["smtpLimits"];

/** Who holds the session up: the client (its budgets run), its DATA (the DATA budget), or the appliance (nothing runs). */
export type Holder = "client" | "data" | "appliance";

/** While the appliance, not the client, holds the session up: look again this soon. */
export const RECHECK_MS = 1000;

/**
 * The session's current budget: which phase's limit applies and when (clock ms) it runs out.
 * `phase` is null while the appliance holds the session up: then `deadline` is only when to look again.
 */
export function budgetOf(
  s: Pick<SessionState, "progressAt" | "greeted" | "dataStartedAt">,
  holder: Holder,
  limits: Pick<Limits, "idleTimeoutMs" | "greetingTimeoutMs" | "dataTimeoutMs">,
  now: number,
): { phase: "greeting" | "idle" | "data" | null; deadline: number } {
  if (holder === "data") return { phase: "data", deadline: (s.dataStartedAt ?? now) + limits.dataTimeoutMs };
  // The appliance holds the session up (a callback, storing a message): not the client's time.
  if (holder === "appliance") return { phase: null, deadline: now + RECHECK_MS };
  return s.greeted
    ? { phase: "idle", deadline: s.progressAt + limits.idleTimeoutMs }
    : { phase: "greeting", deadline: s.progressAt + limits.greetingTimeoutMs };
}

/** The name of a command line, upper-case (`MAIL FROM:<…>` → `MAIL`). */
export const commandName = (line: Buffer | undefined) =>
  String(line ?? "")
    .split(" ", 1)[0]!
    .trim()
    .toUpperCase();
const HELLO = new Set(["EHLO", "HELO", "LHLO"]);

export interface SessionsDeps {
  limits: Limits;
  metrics: Metrics;
  clock: Clock;
  count: CountStage;
  /** This host's name, in the 421 replies. */
  name: string;
  /** The client made progress (or DATA began): re-arm the session's budget check. */
  rearm: (s: SessionState) => void;
}

export class Sessions {
  private readonly states = new WeakMap<SMTPServerSession, SessionState>();
  private readonly perIp = new Map<string, number>();
  private readonly ipRate: RateLimiter;

  constructor(private readonly deps: SessionsDeps) {
    this.ipRate = new RateLimiter(deps.limits.ratePerIp, deps.limits.ratePerIp, deps.clock);
  }

  /** The session's state, created on first use. */
  state(session: SMTPServerSession): SessionState {
    let s = this.states.get(session);
    if (!s) {
      s = {
        started: performance.now(),
        counted: false,
        transactions: new WeakMap(),
        closed: new AbortController(),
        connection: null,
        progressAt: this.deps.clock.now(),
        greeted: false,
        tlsAsked: false,
        commands: 0,
        dataStartedAt: null,
        timer: null,
      };
      this.states.set(session, s);
    }
    return s;
  }

  /** The session's state if it has one. */
  get(session: SMTPServerSession): SessionState | undefined {
    return this.states.get(session);
  }

  /** Connections open from `ip` (accepted by onConnect, not yet closed). */
  openFrom(ip: string): number {
    return this.perIp.get(ip) ?? 0;
  }

  /**
   * Bind the session to its connection and hook its command loop: the command limit
   * (smtp_max_commands since the last accepted message), and the EHLO/HELO and STARTTLS that
   * count as progress.
   */
  attach(connection: SMTPConnection): SessionState {
    const s = this.state(connection.session);
    s.connection = connection;
    const onCommand = connection._onCommand.bind(connection);
    connection._onCommand = (line, callback) => {
      if (++s.commands > this.deps.limits.maxCommands) {
        this.deps.count("session", "too_many_commands");
        return connection.send(421, `4.7.0 ${this.deps.name} too many commands on one connection; reconnect to go on`);
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
    return s;
  }

  /** The client moved its session forward: its idle budget starts again. */
  progress(s: SessionState): void {
    s.progressAt = this.deps.clock.now();
    this.deps.rearm(s);
  }

  /** smtp-server's onConnect: at most smtp_max_connections_per_ip from one address. */
  async onConnect(session: SMTPServerSession): Promise<void> {
    const s = this.state(session);
    const ip = session.remoteAddress;
    const open = this.perIp.get(ip) ?? 0;
    if (open >= this.deps.limits.maxConnectionsPerIp) {
      throw new SmtpReply(421, "4.7.0", "too many connections from your address; try again later", "too_many");
    }
    this.perIp.set(ip, open + 1);
    s.counted = true;
    this.deps.metrics.smtpConnections.inc();
  }

  /** smtp-server's onClose: a DATA read stops waiting, the budget check stops, the address's count drops. */
  onClose(session: SMTPServerSession): void {
    const s = this.states.get(session);
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

  /** MAIL: the per-client rate limit (smtp_rate_per_ip), then a new transaction. */
  async onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    if (!this.ipRate.take(session.remoteAddress)) {
      throw new SmtpReply(421, "4.7.0", "too many messages from your address; try again later", "rate_limited");
    }
    const s = this.state(session);
    s.transactions.set(session.envelope, { recipients: [], mailAt: this.deps.clock.now() });
    this.progress(s);
  }

  /** An accepted RCPT joins the transaction (the same address again replaces its entry). */
  addRecipient(session: SMTPServerSession, recipient: MailRecipient): void {
    const s = this.state(session);
    const txn = s.transactions.get(session.envelope);
    if (!txn) throw new Error("RCPT without a transaction");
    const same = txn.recipients.findIndex((r) => r.address.toLowerCase() === recipient.address.toLowerCase());
    if (same >= 0) txn.recipients[same] = recipient;
    else txn.recipients.push(recipient);
    this.progress(s);
  }

  /** The current transaction (since MAIL), if any. */
  transaction(session: SMTPServerSession): Transaction | undefined {
    return this.state(session).transactions.get(session.envelope);
  }

  /** DATA began: the DATA budget counts from here. */
  dataStarted(s: SessionState): void {
    s.dataStartedAt = this.deps.clock.now();
    this.deps.rearm(s);
  }

  /**
   * DATA ended, whatever its answer: the client's idle budget starts again. An accepted message
   * starts the command budget again too: it bounds the commands a client may send without
   * delivering anything (NOOP, RSET, refused RCPT loops), not a relay that sends a thousand
   * messages over one cached connection.
   */
  dataEnded(s: SessionState, accepted: boolean): void {
    if (accepted) s.commands = 0;
    s.dataStartedAt = null;
    this.progress(s);
  }
}
