import { EXIT, toExitCode } from "../errors/index.ts";

export { EXIT };

export function exitCodeFor(err: unknown): number {
  if (err instanceof CommandFailure) return err.exitCode;
  return toExitCode(err);
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
