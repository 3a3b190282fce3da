import type { EndpointSpec } from "../../control/resources/specs.ts";
import type { Clock } from "../../core/clock.ts";
import type { Resolve } from "../../dispatch/egress.ts";
import type { ResourceStore } from "../../store/index.ts";
import { emailPlugin } from "./email.ts";
import { httpPlugin } from "./http.ts";
import { ToolRegistry } from "./registry.ts";
import { smsPlugin } from "./sms.ts";
import { webhookPlugin } from "./webhook.ts";

/** The tool plugins (docs/agents.md#tools), their registry, provisioning, and the directory of inbound tools. */

export { AgentDirectory } from "./directory.ts";
export {
  completeTools,
  credentialsScope,
  destroyTools,
  type PlannedTool,
  type ProvisionDeps,
  planTools,
  provisionTools,
  recordToolsTx,
} from "./provision.ts";
export { type PluginInfo, pluginIdOf, ToolRegistry } from "./registry.ts";
export { emailPlugin, httpPlugin, smsPlugin, webhookPlugin };

export interface PluginDeps {
  resources: ResourceStore;
  mailDomain: string;
  /** agents_smarthost. */
  smarthost: string | null;
  /** An endpoint's spec as configured now (the dispatcher's cache). */
  endpoint(tenant: string, name: string): Promise<EndpointSpec | undefined>;
  clock?: Clock;
  resolve?: Resolve;
}

/** The registry of every built-in plugin. */
export function builtinTools(deps: PluginDeps): ToolRegistry {
  return new ToolRegistry([
    emailPlugin({
      mailDomain: deps.mailDomain,
      smarthost: deps.smarthost,
      resources: deps.resources,
      resolve: deps.resolve,
    }),
    webhookPlugin({ resources: deps.resources }),
    httpPlugin({ endpoint: deps.endpoint, clock: deps.clock, resolve: deps.resolve }),
    smsPlugin({ resources: deps.resources, clock: deps.clock, resolve: deps.resolve }),
  ]);
}
