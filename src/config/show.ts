import { stringify as toToml } from "smol-toml";
import type { Config } from "./load.ts";
import { SETTING_NAMES, settingMeta, settingsSchema } from "./schema.ts";

export const MASK = "********";

/** The effective settings with every secret masked, as values only (for `--json`). */
export function maskedSettings(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const value = config.settings[name];
    if (value === undefined) continue;
    out[name] = settingMeta(name).secret ? MASK : value;
  }
  out.master_key_file ??= config.masterKeyFile;
  return out;
}

/** `config show`: valid TOML an operator can paste back, each line saying where its value came from. */
export function renderConfig(config: Config): string {
  const values = maskedSettings(config);
  const lines = [`# effective settings${config.file ? ` (file: ${config.file})` : " (no config file)"}`];
  for (const name of SETTING_NAMES) {
    const meta = settingMeta(name);
    if (!(name in values)) {
      const def = meta.defaultText && meta.defaultText !== "unset" ? ` (default: ${meta.defaultText})` : "";
      lines.push(`# ${name} is unset${def}`);
      continue;
    }
    const source = config.sources[name] === "env" ? meta.env : config.sources[name];
    lines.push(`${toToml({ [name]: values[name] }).trim()}  # ${source}`);
  }
  return lines.join("\n") + "\n";
}

/** A Markdown table cell: a `|` in the text (`debug | info | …`) would otherwise start a new column. */
const cell = (text: string): string => text.replaceAll("|", "\\|");

/** The reference table in docs/configuration.md. */
export function renderConfigDocs(): string {
  const rows = SETTING_NAMES.map((name) => {
    const meta = settingMeta(name);
    const schemaDefault = (settingsSchema.properties[name] as { default?: unknown }).default;
    const def = meta.defaultText ?? (schemaDefault === undefined ? "unset" : `\`${String(schemaDefault)}\``);
    const desc = meta.description + (meta.secret ? " **Secret**: masked by `config show`, redacted from logs." : "");
    return `| ${[`\`${name}\``, `\`${meta.env}\``, def, meta.hint, desc].map(cell).join(" | ")} |`;
  });
  return ["| TOML key | environment | default | value | meaning |", "|---|---|---|---|---|", ...rows].join("\n") + "\n";
}

/** The agentowl.toml that `agentowl init` writes: every setting, commented out at its default. */
export function renderConfigTemplate(): string {
  const out = ["# AgentOwl settings. Uncomment to change; AGENTOWL_* environment variables override this file.", ""];
  for (const name of SETTING_NAMES) {
    const meta = settingMeta(name);
    if (name === "data_dir") continue; // this file lives in the data dir: it cannot move it
    const schemaDefault = (settingsSchema.properties[name] as { default?: unknown }).default;
    out.push(`# ${meta.description} (${meta.env}; ${meta.hint})`);
    out.push(
      schemaDefault === undefined
        ? `# ${name} =   # default: ${meta.defaultText ?? "unset"}`
        : `# ${toToml({ [name]: schemaDefault }).trim()}`,
    );
    out.push("");
  }
  return out.join("\n");
}
