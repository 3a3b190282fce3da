import pkg from "../package.json" with { type: "json" };

/** Set at build time by scripts/build.sh (`--define`); from source the commit is "dev". */
declare const AGENTOWL_COMMIT: string | undefined;
declare const AGENTOWL_TARGET: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string = typeof AGENTOWL_COMMIT === "string" ? AGENTOWL_COMMIT : "dev";
/** The build target (linux-x64, linux-arm64, darwin-arm64, darwin-x64); from source, this machine's. */
export const TARGET: string =
  typeof AGENTOWL_TARGET === "string" ? AGENTOWL_TARGET : `${process.platform}-${process.arch}`;

export { isCompiledBinary } from "./core/worker-path.ts";
