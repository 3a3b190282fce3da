import { SCHEMA_VERSION } from "../store/index.ts";
import { COMMIT, TARGET, VERSION } from "../version.ts";
import type { Command } from "./command.ts";
import { EXIT } from "./exit-codes.ts";

export const versionCommand: Command = {
  name: ["version"],
  summary: "print the version, commit and schema version",
  help: `Usage: agentowl version [--json]

Prints this binary's version, the commit it was built from, the target it was built for, the
Bun runtime inside it, and the database schema version it migrates to. With --json:
{"version", "commit", "target", "bun", "schema_version"}.`,
  options: { json: { type: "boolean" } },
  async run({ values }, io) {
    const info = {
      version: VERSION,
      commit: COMMIT,
      target: TARGET,
      bun: Bun.version,
      schema_version: SCHEMA_VERSION,
    };
    io.out(
      values.json
        ? JSON.stringify(info) + "\n"
        : `agentowl ${info.version} (commit ${info.commit}, schema ${info.schema_version}, bun ${info.bun}, ${info.target})\n`,
    );
    return EXIT.ok;
  },
};
