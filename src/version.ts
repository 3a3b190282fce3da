import pkg from "../package.json" with { type: "json" };

/** Set at build time by scripts/build.sh (`--define`); from source it is "dev". */
declare const AGENTOWL_COMMIT: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string = typeof AGENTOWL_COMMIT === "string" ? AGENTOWL_COMMIT : "dev";

/** True inside the compiled `agentowl` binary, whose modules live in Bun's embedded filesystem. */
export function isCompiledBinary(): boolean {
  return import.meta.url.includes("$bunfs") || /^B:[\\/]~BUN/.test(import.meta.path);
}
