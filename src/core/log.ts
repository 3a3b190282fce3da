/**
 * JSON logs, one object per line on stdout. Every line passes through the Redactor, which
 * knows every secret value the process has seen (vault secrets, tokens, the bootstrap token)
 * and masks it wherever it appears, whatever field or message carries it. Field names that
 * look like credentials are masked too, so a careless `log.info("x", { password })` is safe.
 */

import { type Clock, systemClock } from "./clock.ts";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. `{ component: "queue" }`). */
  child(fields: LogFields): Logger;
}

export const REDACTED = "[redacted]";
/** Shorter values would mask ordinary words; secrets this short are refused where they are set. */
export const MIN_SECRET_LENGTH = 6;
const SENSITIVE_KEY = /pass(word)?|secret|token|authorization|api[-_]?key|private[-_]?key|cookie/i;

export class Redactor {
  private readonly secrets = new Set<string>();
  private pattern: RegExp | null = null;

  /** Remember a secret value so that it never appears in a log line. */
  learn(value: string | null | undefined): void {
    if (!value || value.length < MIN_SECRET_LENGTH || this.secrets.has(value)) return;
    this.secrets.add(value);
    // A value may reach the line JSON-escaped (quotes, backslashes, control characters).
    const escaped = JSON.stringify(value).slice(1, -1);
    if (escaped !== value) this.secrets.add(escaped);
    this.pattern = null;
  }

  redact(text: string): string {
    if (this.secrets.size === 0) return text;
    this.pattern ??= new RegExp(
      [...this.secrets]
        .sort((a, b) => b.length - a.length)
        .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
        .join("|"),
      "g",
    );
    return text.replace(this.pattern, REDACTED);
  }
}

export interface LoggerOptions {
  level: LogLevel;
  redactor: Redactor;
  /** Where finished lines go; stdout by default. */
  sink?: (line: string) => void;
  /** Clock for the `time` field; tests inject one. */
  clock?: Clock;
}

const stdoutSink = (line: string): void => {
  process.stdout.write(line + "\n");
};

function replacer(key: string, value: unknown): unknown {
  if (key !== "" && SENSITIVE_KEY.test(key) && value !== null && value !== undefined && typeof value !== "object") {
    return REDACTED;
  }
  if (value instanceof Error) {
    return { name: value.name, message: value.message, ...(value.cause ? { cause: String(value.cause) } : {}) };
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}

export function createLogger(opts: LoggerOptions, bound: LogFields = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(opts.level);
  const sink = opts.sink ?? stdoutSink;
  const clock = opts.clock ?? systemClock;
  const write = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    let line: string;
    try {
      line = JSON.stringify({ time: new Date(clock.now()).toISOString(), level, msg, ...bound, ...fields }, replacer);
    } catch {
      line = JSON.stringify({
        time: new Date(clock.now()).toISOString(),
        level,
        msg,
        log_error: "unserializable fields",
      });
    }
    sink(opts.redactor.redact(line));
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger(opts, { ...bound, ...fields }),
  };
}

/** A logger that drops everything: for CLI commands that print their own output. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

/**
 * Live log lines for `GET /v1/logs/tail`: the logger's sink publishes every finished (already
 * redacted) line here; each SSE client subscribes. A slow client never blocks logging: its
 * stream buffers, and is cut when it falls too far behind.
 */
export class LogTap {
  private readonly listeners = new Map<(line: string) => void, () => void>();

  publish(line: string): void {
    for (const l of this.listeners.keys()) l(line);
  }

  /** `onClose` runs when the process shuts down, so that open streams end instead of holding it up. */
  subscribe(listener: (line: string) => void, onClose: () => void = () => {}): () => void {
    this.listeners.set(listener, onClose);
    return () => this.listeners.delete(listener);
  }

  /** End every subscription (graceful shutdown). */
  closeAll(): void {
    const closers = [...this.listeners.values()];
    this.listeners.clear();
    for (const close of closers) close();
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}
