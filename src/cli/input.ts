import { readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import YAML from "yaml";
import type { CommandIO } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";

/** A file named by `-f`: its text and the name to show for it; `-` is stdin. */
export async function readInputFile(io: CommandIO, path: string | undefined): Promise<{ text: string; name: string }> {
  if (path === undefined) throw new UsageError("missing -f FILE ('-' reads stdin)");
  if (path === "-") {
    if (!io.readStdin) throw new UsageError("-f - needs a standard input");
    return { text: await io.readStdin(), name: "stdin" };
  }
  try {
    return { text: readFileSync(resolve(io.cwd, path), "utf8"), name: basename(path) };
  } catch (e) {
    throw new CommandFailure(
      `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      EXIT.failed,
    );
  }
}

/** One resource from a YAML or JSON file (a `.json` file is read as strict JSON). */
export async function readResourceFile(io: CommandIO, path: string | undefined): Promise<Record<string, unknown>> {
  const { text } = await readInputFile(io, path);
  let value: unknown;
  try {
    value = path?.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    const where = (e as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    const message = (e as Error).message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    throw new CommandFailure(
      `${path}${where ? `:${where.line}:${where.col}` : ""}: not valid ${path?.endsWith(".json") ? "JSON" : "YAML"}: ${message}`,
      EXIT.failed,
    );
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new CommandFailure(`${path}: must hold one resource (a mapping of its fields)`, EXIT.failed);
  return value as Record<string, unknown>;
}
