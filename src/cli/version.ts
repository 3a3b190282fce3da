import { SCHEMA_VERSION } from "../store/index.ts";
import { COMMIT, VERSION } from "../version.ts";
import type { Command } from "./command.ts";
import { EXIT } from "./exit-codes.ts";

export const versionCommand: Command = {
  name: ["version"],
  summary: "print the version, commit and schema version",
  help: `Usage: agentowl version [--json]

Prints this binary's version, the commit it was built from, the database schema version it
migrates to, and the Bun runtime inside it.`,
  options: { json: { type: "boolean" } },
  async run({ values }, io) {
    const info = {
      version: VERSION,
      commit: COMMIT,
      schema_version: SCHEMA_VERSION,
      bun: Bun.version,
      platform: `${process.platform}-${process.arch}`,
    };
    io.out(
      values.json
        ? JSON.stringify(info) + "\n"
        : `agentowl ${info.version} (commit ${info.commit}, schema ${info.schema_version}, bun ${info.bun}, ${info.platform})\n`,
    );
    return EXIT.ok;
  },
};
