import { parseArgs, type ParseArgsConfig } from "node:util";
import { closest } from "../errors/index.ts";
import { UsageError } from "./exit-codes.ts";

export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  cwd: string;
  /** Whether stdin and stderr are terminals: prompts and progress bars are for people only. */
  tty?: { stdin: boolean; stderr: boolean };
  /** All of stdin, as text (`-f -`, a token piped to `login`). */
  readStdin?(): Promise<string>;
  /** One line typed at the terminal, not echoed (a token at `login`). */
  readSecret?(prompt: string): Promise<string>;
  /** A yes/no question at the terminal (a certificate to trust at `login`); true for yes. */
  confirm?(question: string): Promise<boolean>;
  /** Aborted at SIGINT or SIGTERM. Asking for it takes those signals over: for commands that run until stopped. */
  untilInterrupted?(): AbortSignal;
}

export type CommandArgs = { values: Record<string, unknown>; positionals: string[] };

export interface Command {
  /** Words after `agentowl`, e.g. ["config", "show"]. */
  name: string[];
  summary: string;
  /** Full help text: usage line first. */
  help: string;
  options?: ParseArgsConfig["options"];
  /** How many positional arguments the command takes (after its name); none unless set. */
  maxPositionals?: number;
  /** Returns the exit code. */
  run(args: CommandArgs, io: CommandIO): Promise<number>;
}

/** Parse a command's own arguments; a mistake is a UsageError, never a stack trace. */
export function parseCommandArgs(cmd: Command, argv: string[]): CommandArgs {
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

/**
 * A string option that takes one of a fixed set of values (`--state`, `--type`): anything else is
 * a usage error naming the choices and the nearest one, never an empty listing.
 */
export function choiceOpt<T extends string>(
  values: Record<string, unknown>,
  key: string,
  choices: readonly T[],
): T | undefined {
  const value = stringOpt(values, key);
  if (value === undefined || (choices as readonly string[]).includes(value)) return value as T | undefined;
  const near = closest(value, choices);
  throw new UsageError(
    `--${key} takes one of ${choices.join(", ")}, not '${value}'${near ? `: did you mean '${near}'?` : ""}`,
  );
}

/** A string option's value, or undefined. */
export const stringOpt = (values: Record<string, unknown>, key: string): string | undefined =>
  typeof values[key] === "string" ? (values[key] as string) : undefined;
