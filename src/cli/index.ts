import { isAppError } from "../errors/index.ts";
import { closest } from "../errors/index.ts";
import { type Command, type CommandIO, parseCommandArgs } from "./command.ts";
import { configShowCommand } from "./config.ts";
import { CommandFailure, EXIT, exitCodeFor, UsageError } from "./exit-codes.ts";
import { DESIRED_COMMANDS } from "./desired.ts";
import { DEV_COMMANDS } from "./dev.ts";
import { AGENT_COMMANDS } from "./agents.ts";
import { APPROVAL_COMMANDS } from "./approvals.ts";
import { VAULT_COMMANDS } from "./vault.ts";
import { AUDIT_COMMANDS } from "./audit.ts";
import { BACKUP_COMMANDS } from "./backup.ts";
import { POLICY_COMMANDS } from "./policy.ts";
import { EVENT_COMMANDS } from "./events.ts";
import { initCommand } from "./init.ts";
import { LOGIN_COMMANDS } from "./login.ts";
import { logsTailCommand } from "./logs.ts";
import { RESOURCE_COMMANDS } from "./resources.ts";
import { runtimeCommand } from "./runtime.ts";
import { serveCommand } from "./serve.ts";
import { TOKEN_COMMANDS } from "./tokens.ts";
import { USER_COMMANDS } from "./users.ts";
import { statusCommand } from "./status.ts";
import { STORE_COMMANDS } from "./store.ts";
import { rollbackCommand, upgradeCommand } from "./upgrade.ts";
import { versionCommand } from "./version.ts";

export const COMMANDS: readonly Command[] = [
  serveCommand,
  initCommand,
  versionCommand,
  configShowCommand,
  ...LOGIN_COMMANDS,
  ...DESIRED_COMMANDS,
  ...RESOURCE_COMMANDS,
  ...EVENT_COMMANDS,
  ...AUDIT_COMMANDS,
  ...APPROVAL_COMMANDS,
  ...AGENT_COMMANDS,
  ...VAULT_COMMANDS,
  ...POLICY_COMMANDS,
  ...BACKUP_COMMANDS,
  ...STORE_COMMANDS,
  logsTailCommand,
  ...TOKEN_COMMANDS,
  ...USER_COMMANDS,
  ...DEV_COMMANDS,
  runtimeCommand,
  statusCommand,
  upgradeCommand,
  rollbackCommand,
];

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.join(" ").length));
  return `Usage: agentowl <command> [options]

AgentOwl: a self-hosted inbound-communications and agent-workflow appliance.

Commands:
${COMMANDS.map((c) => `  ${c.name.join(" ").padEnd(width)}  ${c.summary}`).join("\n")}

Run 'agentowl <command> --help' for a command's options.

Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 conflict, 5 auth, 78 invalid settings.
`;
}

/** Longest command whose name is a prefix of argv. */
function find(argv: string[]): { cmd: Command; rest: string[] } | null {
  let best: Command | null = null;
  for (const c of COMMANDS) {
    if (c.name.every((w, i) => argv[i] === w) && c.name.length > (best?.name.length ?? 0)) best = c;
  }
  return best ? { cmd: best, rest: argv.slice(best.name.length) } : null;
}

/** The commands whose names start with `words` (a group such as `events`, or `endpoints status`). */
function group(words: readonly string[]): Command[] {
  return COMMANDS.filter((c) => c.name.length > words.length && words.every((w, i) => c.name[i] === w));
}

/** A group's help: its commands and their summaries, like the top-level usage. */
export function groupHelp(words: readonly string[]): string {
  const members = group(words);
  const width = Math.max(...members.map((c) => c.name.join(" ").length));
  return `Usage: agentowl ${words.join(" ")} <command> [options]

Commands:
${members.map((c) => `  ${c.name.join(" ").padEnd(width)}  ${c.summary}`).join("\n")}

Run 'agentowl ${words.join(" ")} <command> --help' for a command's options.
`;
}

/** A hint after a message: in parentheses, or after a semicolon when the message already ends in some. */
export const withHint = (message: string, hint: string): string =>
  message.endsWith(")") ? `${message}; ${hint}` : `${message} (${hint})`;

const isHelpFlag = (w: string | undefined) => w === "--help" || w === "-h";

/**
 * What an argv that names no command gets: a group's help when it asked for it, else one line
 * that says what is wrong and the nearest command ("did you mean"), never two parentheticals.
 */
function unknown(argv: string[], io: CommandIO): number {
  const words = argv.filter((w) => !w.startsWith("-"));
  // The longest prefix of the words that is a group: `events`, `endpoints`, `vault`.
  let depth = words.length;
  while (depth > 0 && group(words.slice(0, depth)).length === 0) depth--;
  if (depth > 0 && depth === words.length && argv.some(isHelpFlag)) {
    io.out(groupHelp(words));
    return EXIT.ok;
  }
  const prefix = words.slice(0, depth);
  const next = words[depth];
  const candidates = [...new Set((depth ? group(prefix) : COMMANDS).map((c) => c.name[depth]!))];
  const near = next === undefined ? null : closest(next, candidates);
  const label = `agentowl: unknown command '${argv.join(" ")}'`;
  const help = `agentowl ${[...prefix, "--help"].join(" ")}`;
  if (near) io.err(`${label}: did you mean 'agentowl ${[...prefix, near].join(" ")}'? (see '${help}')\n`);
  else if (depth) {
    const which = group(prefix)
      .map((c) => `'agentowl ${c.name.join(" ")}'`)
      .join(", ");
    io.err(
      depth === words.length
        ? `agentowl ${prefix.join(" ")}: name one of ${which} (see '${help}')\n`
        : `${label}: '${prefix.join(" ")}' has ${which} (see '${help}')\n`,
    );
  } else io.err(`${label} (see '${help}')\n`);
  return EXIT.usage;
}

/** Run one command line; returns the exit code. Every failure is one line on stderr. */
export async function runCli(argv: string[], io: CommandIO): Promise<number> {
  if (argv.length === 0 || argv[0] === "help" || isHelpFlag(argv[0])) {
    const words = argv.slice(1);
    const topic = argv[0] === "help" && words.length ? find(words) : null;
    if (topic && topic.rest.length === 0) io.out(topic.cmd.help + "\n");
    else if (argv[0] === "help" && words.length && group(words).length) io.out(groupHelp(words));
    else if (argv[0] === "help" && words.length) return unknown(words, io);
    else io.out(usage());
    return argv.length === 0 ? EXIT.usage : EXIT.ok;
  }
  if (argv[0] === "--version" || argv[0] === "-v") argv = ["version"];
  const found = find(argv);
  if (!found) return unknown(argv, io);
  const { cmd, rest } = found;
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
export { processIO } from "./terminal.ts";
