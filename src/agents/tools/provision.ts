import type { TemplateSpec } from "../../control/resources/specs.ts";
import { AppError } from "../../errors/index.ts";
import type { Storage, Tx } from "../../store/index.ts";
import type { Vault } from "../../vault/vault.ts";
import type { RuntimeRecord, ToolPlugin, ToolRecord } from "../types.ts";
import type { AgentDirectory } from "./directory.ts";
import type { ToolRegistry } from "./registry.ts";

/**
 * A claimed runtime's tools (docs/agents.md#tools): one row per provisioned resource, written
 * `creating` before the plugin makes anything and `active` after, so that a crash in between
 * leaves a row that reconcile destroys. A `provisioning: user` tool's credentials come from the
 * claim's user config, are checked by the plugin and kept in the vault
 * (`vault:<tenant>/agent-<runtime>-<tool>`), never in the runtime's environment or its
 * configure message. Destroy is the same in reverse: `destroying`, the plugin's destroy, then
 * `destroyed` with the credentials' secret expired, in one unit with its audit entry.
 */

export interface ProvisionDeps {
  storage: Storage;
  vault: Vault;
  registry: ToolRegistry;
  /** Told of every tool that becomes active or stops being so. */
  directory?: AgentDirectory;
}

/** One tool of a claim, checked: its plugin, its config and its credentials. */
export interface PlannedTool {
  spec: NonNullable<TemplateSpec["tools"]>[number];
  plugin: ToolPlugin;
  config: Record<string, unknown>;
  credentials?: Record<string, string>;
}

/**
 * Every tool of `template` checked (plugin, provisioning kind, credentials) before anything is
 * written. `userConfig` is the claim's, per tool id (settings, and `credentials` for user tools).
 */
export function planTools(
  deps: Pick<ProvisionDeps, "registry">,
  template: Pick<TemplateSpec, "tools">,
  userConfig: Record<string, unknown> | null,
): PlannedTool[] {
  return (template.tools ?? []).map((spec) => plan(deps, userConfig, spec));
}

/**
 * Inside the claim's own unit of work: a `creating` row per tool and its `tool.provision` audit
 * entry, so that the claim and every tool it owes are one commit, and a crash after it leaves rows
 * that reconcile destroys. A user tool's row names its credentials' secret from the start (the
 * name is fixed by runtime and tool), so a secret kept before a crash is expired with the row.
 */
export function recordToolsTx(
  deps: Pick<ProvisionDeps, "storage">,
  tx: Tx,
  runtime: RuntimeRecord,
  planned: readonly PlannedTool[],
  actor: string,
): ToolRecord[] {
  const { tenant, agent } = claimOf(runtime);
  const { storage } = deps;
  return planned.map((p) => {
    const r = storage.agents.insertToolTx(tx, {
      runtimeId: runtime.id,
      tenant,
      tool: p.spec.id,
      plugin: p.plugin.id,
      provisioning: p.spec.provisioning,
      state: "creating",
      resourceId: null,
      config: {},
      secretRef: p.credentials ? `vault:${credentialsScope(tenant, runtime.id, p.spec.id)}` : null,
    });
    storage.audit.appendTx(tx, {
      actor,
      tenant,
      action: "tool.provision",
      target: `${tenant}/agents/${agent}/tools/${p.spec.id}`,
      decision: null,
      details: { runtime: runtime.id, tool: r.id, plugin: p.plugin.id, provisioning: p.spec.provisioning },
    });
    return r;
  });
}

/**
 * After the rows committed: every plugin makes its resource (a user tool's credentials kept in the
 * vault first), then every row becomes `active` in one unit.
 */
export async function completeTools(
  deps: ProvisionDeps,
  runtime: RuntimeRecord,
  planned: readonly PlannedTool[],
  rows: readonly ToolRecord[],
  actor: string,
): Promise<ToolRecord[]> {
  if (!planned.length) return [];
  const { tenant, agent } = claimOf(runtime);
  const created = await Promise.all(
    planned.map(async (p, i) => {
      const row = rows[i]!;
      if (p.credentials && row.secretRef) {
        const scope = row.secretRef.slice("vault:".length);
        const value = JSON.stringify(p.credentials);
        if (await deps.vault.describe(scope)) await deps.vault.rotate(scope, value, { actor, graceMs: 0 });
        else await deps.vault.set(scope, value, { actor });
      }
      return p.plugin.create({
        tenant,
        runtimeId: runtime.id,
        agent,
        tool: p.spec.id,
        config: p.config,
        ...(p.credentials ? { credentials: p.credentials } : {}),
      });
    }),
  );
  const { storage } = deps;
  const active = await storage.committer.run((tx) =>
    rows.map((row, i) => {
      const made = storage.agents.updateToolTx(
        tx,
        row.id,
        { state: "active", resourceId: created[i]!.resourceId, config: created[i]!.config },
        ["creating"],
      );
      if (!made)
        throw new AppError("conflict", `tool ${row.tool} of runtime ${runtime.id} was destroyed while it was made`);
      return made;
    }),
  );
  for (const t of active) deps.directory?.add(t, agent);
  return active;
}

/** The tools of `template` for the claimed `runtime`, every one checked before any is made. */
export async function provisionTools(
  deps: ProvisionDeps,
  runtime: RuntimeRecord,
  template: TemplateSpec,
  actor: string,
): Promise<ToolRecord[]> {
  claimOf(runtime);
  const planned = planTools(deps, template, runtime.userConfig);
  if (!planned.length) return [];
  const rows = await deps.storage.committer.run((tx) => recordToolsTx(deps, tx, runtime, planned, actor));
  return completeTools(deps, runtime, planned, rows, actor);
}

/** Destroy every tool of a runtime that is not destroyed yet (those a crash left half made or half destroyed too). */
export async function destroyTools(deps: ProvisionDeps, runtimeId: string, actor: string): Promise<number> {
  const { storage } = deps;
  let n = 0;
  for (const tool of await storage.agents.listTools(runtimeId)) {
    if (tool.state === "destroyed") continue;
    const row = await storage.agents.updateTool(tool.id, { state: "destroying" }, ["creating", "active", "destroying"]);
    if (!row) continue;
    deps.directory?.remove(row.id);
    // A plugin no longer there has nothing of its own to undo: the row and the secret are ours.
    await deps.registry.get(row.plugin)?.destroy(row);
    await storage.committer.run((tx) => {
      storage.agents.updateToolTx(tx, row.id, { state: "destroyed" }, ["destroying"]);
      if (row.secretRef) {
        const scope = row.secretRef.slice("vault:".length);
        const slash = scope.indexOf("/");
        storage.secrets.expireCurrentTx(tx, { tenant: scope.slice(0, slash), name: scope.slice(slash + 1) }, tx.now);
      }
      storage.audit.appendTx(tx, {
        actor,
        tenant: row.tenant,
        action: "tool.destroy",
        target: `${row.tenant}/tools/${row.tool}`,
        decision: null,
        details: { runtime: runtimeId, tool: row.id, plugin: row.plugin, resource: row.resourceId },
      });
    });
    n++;
  }
  return n;
}

/** Where a user tool's credentials are kept: a secret name of the tenant (lower-case, digits, dashes, at most 63). */
export function credentialsScope(tenant: string, runtimeId: string, tool: string): string {
  const clean = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, "-");
  return `${tenant}/${`agent-${clean(runtimeId)}-${clean(tool)}`.slice(0, 63).replace(/-+$/, "")}`;
}

function claimOf(runtime: RuntimeRecord): { tenant: string; agent: string } {
  if (runtime.state !== "claimed" || !runtime.tenant || !runtime.agent)
    throw new AppError("conflict", `runtime ${runtime.id} is ${runtime.state}, not claimed`);
  return { tenant: runtime.tenant, agent: runtime.agent };
}

/** A tool's plugin, its config (the template's, then the claim's non-secret settings) and its checked credentials. */
function plan(
  deps: Pick<ProvisionDeps, "registry">,
  userConfig: Record<string, unknown> | null,
  spec: PlannedTool["spec"],
): PlannedTool {
  const plugin = deps.registry.pluginFor(spec);
  if (!plugin.provisioning.includes(spec.provisioning))
    throw new AppError(
      "invalid_input",
      `tool ${spec.id}: the ${plugin.id} plugin is provisioned by ${plugin.provisioning.join(" or ")}, not ${spec.provisioning}`,
    );
  const own = userConfig?.[spec.id];
  const { credentials, ...settings } = (own && typeof own === "object" ? own : {}) as Record<string, unknown>;
  const config = { ...(spec.config ?? {}), ...settings };
  if (spec.provisioning !== "user") return { spec, plugin, config };
  if (!plugin.validateCredentials)
    throw new AppError("invalid_input", `tool ${spec.id}: ${plugin.id} takes no credentials`);
  if (!credentials || typeof credentials !== "object")
    throw new AppError(
      "invalid_input",
      `tool ${spec.id} is provisioned by the user: user_config.${spec.id}.credentials is required`,
    );
  return { spec, plugin, config, credentials: plugin.validateCredentials(credentials as Record<string, unknown>) };
}
