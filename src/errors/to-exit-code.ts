import { type ErrorKind, isAppError } from "./app-error.ts";

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

/** The CLI's edge of the error model, beside toProblem (HTTP) and toSmtp: an AppError's kind as an exit code. */
export function toExitCode(err: unknown): number {
  return (isAppError(err) && BY_KIND[err.kind]) || EXIT.failed;
}
