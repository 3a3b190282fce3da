/**
 * `agentowl runtime`: the reference agent runtime, which the appliance starts in each runtime's
 * sandbox (docs/runtime-protocol.md). main.ts runs it without loading the command table: it starts
 * once per runtime, so it loads only its own modules.
 */
import { EXIT } from "../errors/index.ts";
import type { Command } from "./command.ts";

export const RUNTIME_ENV = ["AGENTOWL_RUNTIME_SOCKET", "AGENTOWL_RUNTIME_TOKEN", "AGENTOWL_RUNTIME_ID"] as const;

/** Runs the runtime with the socket, token and id the appliance put in its environment. */
export async function runRuntimeFromEnv(
  env: Record<string, string | undefined>,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  const missing = RUNTIME_ENV.filter((k) => !env[k]);
  if (missing.length) {
    err(`agentowl runtime: ${missing.join(", ")} not set (the appliance starts this command with them)\n`);
    return EXIT.usage;
  }
  // Loaded here, not at the top: `agentowl --help` must not load the runtime, nor the runtime the CLI.
  const { runRuntime } = await import("../agents/runtime/runtime.ts");
  return runRuntime(
    { socket: env.AGENTOWL_RUNTIME_SOCKET!, token: env.AGENTOWL_RUNTIME_TOKEN!, id: env.AGENTOWL_RUNTIME_ID! },
    (line) => out(`${line}\n`),
  );
}

export const runtimeCommand: Command = {
  name: ["runtime"],
  summary: "run the reference agent runtime (the appliance starts it in each runtime's sandbox)",
  help: `Usage: agentowl runtime

The reference agent runtime. The appliance starts it for each runtime of the agent pool, in the
runtime's sandbox, with AGENTOWL_RUNTIME_SOCKET (the Unix socket to connect to),
AGENTOWL_RUNTIME_TOKEN (its token, answered to the appliance's hello) and AGENTOWL_RUNTIME_ID.
It answers tasks with the template's model and tools, through the appliance, and exits when the
socket closes. The protocol, for writing your own runtime: docs/runtime-protocol.md.`,
  run: (_args, io) => runRuntimeFromEnv(io.env, io.out, io.err),
};
