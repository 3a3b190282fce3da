import pkg from "../package.json" with { type: "json" };

/** Set at build time by scripts/build.sh (`--define`); from source the commit is "dev". */
declare const AGENTOWL_COMMIT: string | undefined;
declare const AGENTOWL_TARGET: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string = typeof AGENTOWL_COMMIT === "string" ? AGENTOWL_COMMIT : "dev";
/** The build target (linux-x64, linux-arm64, darwin-arm64, darwin-x64); from source, this machine's. */
export const TARGET: string =
  typeof AGENTOWL_TARGET === "string" ? AGENTOWL_TARGET : `${process.platform}-${process.arch}`;

/** True inside the compiled `agentowl` binary, whose modules live in Bun's embedded filesystem. */
export function isCompiledBinary(): boolean {
  return import.meta.url.includes("$bunfs") || /^B:[\\/]~BUN/.test(import.meta.path);
}
