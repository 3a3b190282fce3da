import type { BindingSpec } from "../../control/resources/specs.ts";
import { AppError } from "../../errors/index.ts";
import type { ResourceStore } from "../../store/index.ts";
import type { Provisioned, ToolContext, ToolPlugin } from "../types.ts";

/**
 * The `webhook` tool (docs/agents.md#tools): a webhook binding of the tenant whose events go to
 * the agent while the tool is active (routing asks the pool's AgentDirectory). It only receives.
 */
export function webhookPlugin(deps: { resources: ResourceStore }): ToolPlugin {
  const provision = async (ctx: ToolContext): Promise<Provisioned> => {
    const name = ctx.config.binding;
    if (typeof name !== "string" || !name)
      throw new AppError("invalid_input", "a webhook tool needs config.binding: the name of a webhook binding");
    const row = await deps.resources.get({ tenant: ctx.tenant, kind: "bindings", name });
    if (!row || (row.spec as BindingSpec).type !== "webhook")
      throw new AppError("invalid_input", `no webhook binding ${name} in tenant ${ctx.tenant}`);
    return {
      resourceId: `${ctx.tenant}/${name}`,
      config: { binding: name, path: `/ingress/webhook/${ctx.tenant}/${name}` },
    };
  };
  return {
    id: "webhook",
    description: "A webhook binding of the tenant whose events become the agent's tasks.",
    provisioning: ["pool"],
    parameters: { type: "object", properties: {}, additionalProperties: false },
    create: provision,
    update: (ctx) => provision(ctx),
    destroy: async () => {},
    async call() {
      throw new AppError("invalid_input", "a webhook tool only receives: its events come to the agent as tasks");
    },
  };
}
