import { isAppError } from "../errors/index.ts";
import { type Command, type CommandIO, parseCommandArgs } from "./command.ts";
import { configShowCommand } from "./config.ts";
import { CommandFailure, EXIT, exitCodeFor, UsageError } from "./exit-codes.ts";
import { DESIRED_COMMANDS } from "./desired.ts";
import { APPROVAL_COMMANDS } from "./approvals.ts";
import { VAULT_COMMANDS } from "./vault.ts";
import { AUDIT_COMMANDS } from "./audit.ts";
import { POLICY_COMMANDS } from "./policy.ts";
import { EVENT_COMMANDS } from "./events.ts";
import { initCommand } from "./init.ts";
import { LOGIN_COMMANDS } from "./login.ts";
import { logsTailCommand } from "./logs.ts";
import { RESOURCE_COMMANDS } from "./resources.ts";
import { serveCommand } from "./serve.ts";
import { TOKEN_COMMANDS } from "./tokens.ts";
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
  ...VAULT_COMMANDS,
  ...POLICY_COMMANDS,
  logsTailCommand,
  ...TOKEN_COMMANDS,
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

/** Run one command line; returns the exit code. Every failure is one line on stderr. */
export async function runCli(argv: string[], io: CommandIO): Promise<number> {
  if (argv.length === 0 || argv[0] === "help" || argv[0] === "--help" || argv[0] === "-h") {
    const topic = argv[0] === "help" && argv.length > 1 ? find(argv.slice(1)) : null;
    io.out(topic ? topic.cmd.help + "\n" : usage());
    return argv.length === 0 ? EXIT.usage : EXIT.ok;
  }
  if (argv[0] === "--version" || argv[0] === "-v") argv = ["version"];
  const found = find(argv);
  if (!found) {
    const group = COMMANDS.filter((c) => c.name[0] === argv[0]);
    const hint = group.length ? ` (try: ${group.map((c) => `agentowl ${c.name.join(" ")}`).join(", ")})` : " (see 'agentowl --help')";
    io.err(`agentowl: unknown command '${argv.join(" ")}'${hint}\n`);
    return EXIT.usage;
  }
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
      io.err(`${label}: ${e.message} (see '${label} --help')\n`);
      return EXIT.usage;
    }
    const message = isAppError(e) ? e.detail : ((e as Error)?.message ?? String(e));
    io.err(`${label}: ${message}\n`);
    if (e instanceof CommandFailure) for (const line of e.lines) io.err(`${line}\n`);
    return exitCodeFor(e);
  }
}
