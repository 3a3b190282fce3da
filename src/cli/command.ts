import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./exit-codes.ts";

export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  cwd: string;
}

export interface Command {
  /** Words after `agentowl`, e.g. ["config", "show"]. */
  name: string[];
  summary: string;
  /** Full help text: usage line first. */
  help: string;
  options?: ParseArgsConfig["options"];
  /** Returns the exit code. */
  run(args: { values: Record<string, unknown>; positionals: string[] }, io: CommandIO): Promise<number>;
}

/** Parse a command's own arguments; a mistake is a UsageError, never a stack trace. */
export function parseCommandArgs(cmd: Command, argv: string[]): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...cmd.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { values, positionals };
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/, ""));
  }
}
