#!/usr/bin/env bun
/**
 * The one entry point of `agentowl`: the server (`serve`) and every CLI command.
 * The composition root is src/app/app.ts; this file only turns argv into a command and an exit code.
 */
import { runCli } from "./cli/index.ts";
import { processIO } from "./cli/index.ts";

const code = await runCli(process.argv.slice(2), processIO());
process.exit(code);
