import { isAppError } from "../errors/index.ts";
import { type Command, type CommandIO, parseCommandArgs } from "./command.ts";
import { CommandFailure, EXIT, exitCodeFor, UsageError } from "./exit-codes.ts";

/** A hint after a message: in parentheses, or after a semicolon when the message already ends in some. */
export const withHint = (message: string, hint: string): string =>
  message.endsWith(")") ? `${message}; ${hint}` : `${message} (${hint})`;

/**
 * Run one command with the words after its name; returns the exit code. Every failure is one line
 * on stderr. Apart from the command table (src/cli/index.ts), so that `agentowl serve` starts
 * without loading every other command's modules.
 */
export async function runCommand(cmd: Command, rest: string[], io: CommandIO): Promise<number> {
  const label = `agentowl ${cmd.name.join(" ")}`;
  try {
    const args = parseCommandArgs(cmd, rest);
    if (args.values.help) {
      io.out(cmd.help + "\n");
      return EXIT.ok;
    }
    const extra = args.positionals[cmd.maxPositionals ?? 0];
    if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
    return await cmd.run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${label}: ${withHint(e.message, `see '${label} --help'`)}\n`);
      return EXIT.usage;
    }
    const message = isAppError(e) ? e.detail : ((e as Error)?.message ?? String(e));
    io.err(`${label}: ${message}\n`);
    if (e instanceof CommandFailure) for (const line of e.lines) io.err(`${line}\n`);
    return exitCodeFor(e);
  }
}
