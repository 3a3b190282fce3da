import { loadConfig, maskedSettings, renderConfig } from "../config/index.ts";
import { isCompiledBinary } from "../version.ts";
import type { Command } from "./command.ts";
import { EXIT } from "./exit-codes.ts";

export const configShowCommand: Command = {
  name: ["config", "show"],
  summary: "print the effective settings, secrets masked",
  help: `Usage: agentowl config show [--json]

Prints the settings 'agentowl serve' would use: defaults, then agentowl.toml (AGENTOWL_CONFIG,
else <data dir>/agentowl.toml), then AGENTOWL_* variables. Each line says where its value came
from. Secrets are masked. The settings are validated exactly as at start-up.

Exit codes: 0 valid, 78 invalid (the error names the setting).`,
  options: { json: { type: "boolean" } },
  async run({ values }, io) {
    const config = loadConfig({ env: io.env, cwd: io.cwd, compiled: isCompiledBinary() });
    io.out(values.json ? JSON.stringify(maskedSettings(config), null, 2) + "\n" : renderConfig(config));
    return EXIT.ok;
  },
};
