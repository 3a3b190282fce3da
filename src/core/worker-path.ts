import { join } from "node:path";

/** True inside the compiled `agentowl` binary, whose modules live in Bun's embedded filesystem. */
export function isCompiledBinary(): boolean {
  return import.meta.url.includes("$bunfs") || /^B:[\\/]~BUN/.test(import.meta.path);
}

/**
 * Where the worker thread `file` (a path under src/, such as "mail/parse-worker.ts") is. From
 * source, that file. In the `bun build --compile` binary every module reports the entry point's
 * path instead of its own, so each worker is an entry point of its own (scripts/build.sh lists
 * them; test/packaging/workers.test.ts checks that it does), found from the bundle root, src/.
 */
export function workerPath(file: string): string {
  return isCompiledBinary() ? `./${file}` : join(import.meta.dir, "..", file);
}
