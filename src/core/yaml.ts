/**
 * The `yaml` package, loaded on first use: the server parses and renders YAML only when desired
 * state is validated, planned or applied and when the console edits a YAML setting, so an idle
 * appliance does without its 70-odd modules (docs/performance.md#idle-memory).
 */
type Yaml = typeof import("yaml");

let loaded: Yaml | null = null;

export function yaml(): Yaml {
  loaded ??= require("yaml") as Yaml;
  return loaded;
}
