import { type ErrorKind, isAppError } from "../errors/index.ts";

/** Exit codes of every `agentowl` command (docs/cli.md). */
export const EXIT = {
  ok: 0,
  /** The command failed: storage, network, a server-side error. */
  failed: 1,
  /** Bad command line: unknown command or option, missing argument. */
  usage: 2,
  notFound: 3,
  /** A conflict: a stale If-Match, a database newer than the binary, a data dir already in use. */
  conflict: 4,
  /** Not signed in, or not allowed. */
  auth: 5,
  /** The settings are invalid (sysexits EX_CONFIG): systemd does not restart-loop on it. */
  config: 78,
} as const;

const BY_KIND: Partial<Record<ErrorKind, number>> = {
  config_invalid: EXIT.config,
  invalid_input: EXIT.usage,
  not_found: EXIT.notFound,
  conflict: EXIT.conflict,
  precondition_failed: EXIT.conflict,
  unauthenticated: EXIT.auth,
  forbidden: EXIT.auth,
};

export function exitCodeFor(err: unknown): number {
  if (err instanceof CommandFailure) return err.exitCode;
  return (isAppError(err) && BY_KIND[err.kind]) || EXIT.failed;
}

/**
 * A command that failed for a reason it can name: the message is the one stderr line, `lines`
 * follow it (one per problem of a validation failure), `exitCode` is one of EXIT. `transient`
 * failures (the server unreachable, a 5xx) may pass if tried again: commands that run until
 * stopped (`events ls --follow`, `logs tail`) retry those and end on any other.
 */
export class CommandFailure extends Error {
  override readonly name = "CommandFailure";
  constructor(
    message: string,
    readonly exitCode: number,
    readonly lines: readonly string[] = [],
    readonly transient = false,
  ) {
    super(message);
  }
}

/** A command-line mistake: printed with a pointer to --help, exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}
