import { AppError } from "../../errors/index.ts";
import type { ToolPlugin } from "../types.ts";

/** What `GET /v1/tools` shows of a plugin. */
export interface PluginInfo {
  id: string;
  description: string;
  provisioning: readonly ("pool" | "user")[];
  parameters: Record<string, unknown>;
}

/**
 * The tool plugins by id (docs/agents.md#tools). A template's tool names its plugin in
 * `config.plugin`, else by its id's first segment (`email`, `http.crm` → `http`).
 */
export class ToolRegistry {
  private readonly plugins = new Map<string, ToolPlugin>();

  constructor(plugins: readonly ToolPlugin[]) {
    for (const p of plugins) {
      if (this.plugins.has(p.id)) throw new Error(`tool plugin ${p.id} registered twice`);
      this.plugins.set(p.id, p);
    }
  }

  get(id: string): ToolPlugin | undefined {
    return this.plugins.get(id);
  }

  /** The plugin a template's tool uses, or AppError invalid_input naming the ones there are. */
  pluginFor(tool: { id: string; config?: Record<string, unknown> }): ToolPlugin {
    const id = pluginIdOf(tool);
    const plugin = this.plugins.get(id);
    if (!plugin)
      throw new AppError(
        "invalid_input",
        `tool ${tool.id}: no plugin ${id} (there are ${[...this.plugins.keys()].sort().join(", ")})`,
      );
    return plugin;
  }

  list(): PluginInfo[] {
    return [...this.plugins.values()]
      .map((p) => ({ id: p.id, description: p.description, provisioning: p.provisioning, parameters: p.parameters }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }
}

export function pluginIdOf(tool: { id: string; config?: Record<string, unknown> }): string {
  const named = tool.config?.plugin;
  return typeof named === "string" && named ? named : tool.id.split(".")[0]!;
}
