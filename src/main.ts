#!/usr/bin/env bun
/**
 * The one entry point of `agentowl`: the server (`serve`) and every CLI command.
 * The composition root is src/app/app.ts; this file only turns argv into a command and an exit code.
 */
const argv = process.argv.slice(2);

// The agent runtime starts in every runtime's sandbox: it skips the command table and its imports.
if (argv.length === 1 && argv[0] === "runtime") {
  // Bun makes process.stdout on first use, which took 4-12 ms inside a claim (the runtime logs its
  // configure): made here, before the hello, it costs the warm claim nothing.
  void process.stdout;
  const { runRuntimeFromEnv } = await import("./cli/runtime.ts");
  const code = await runRuntimeFromEnv(
    process.env,
    (text) => process.stdout.write(text),
    (text) => process.stderr.write(text),
  );
  process.exit(code);
}

const { runCli, processIO } = await import("./cli/index.ts");
process.exit(await runCli(argv, processIO()));

// A module (for top-level await), though it imports only lazily.
export {};
