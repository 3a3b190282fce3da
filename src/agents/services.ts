import type { TemplateSpec } from "../control/resources/specs.ts";
import type { Clock } from "../core/clock.ts";
import { systemClock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Attempt } from "../dispatch/post.ts";
import type { AgentTargets } from "../dispatch/context.ts";
import type { TaskTrace } from "../dispatch/trace.ts";
import { AppError, isAppError } from "../errors/index.ts";
import type { Envelope, Span } from "../events/envelope.ts";
import type { CompiledPolicy } from "../policy/engine.ts";
import type { DeliveryRow, Storage, Tx } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import { type TaskContext, ToolCalls } from "./calls.ts";
import type { AgentMetrics } from "./metrics.ts";
import { ModelProxy } from "./model.ts";
import type { Pool } from "./pool.ts";
import { TemplateCache } from "./templates.ts";
import {
  AgentDirectory,
  builtinTools,
  completeTools,
  destroyTools,
  type PlannedTool,
  type PluginDeps,
  type ProvisionDeps,
  planTools,
  provisionTools,
  recordToolsTx,
  type ToolRegistry,
} from "./tools/index.ts";
import type {
  ProvisionRequest,
  ProvisionResult,
  RequestHandler,
  RuntimeRecord,
  TemplateTool,
  ToolDefinition,
  ToolPlan,
  ToolProvisioner,
  ToolRecord,
} from "./types.ts";

/** The services' plan: the checked tools, as provisioning makes them. */
type PlanOf = ToolPlan & { planned: PlannedTool[] };

export interface AgentServicesDeps {
  storage: Storage;
  vault: Vault;
  log: Logger;
  clock?: Clock;
  mailDomain: string;
  smarthost: string | null;
  modelTimeoutMs: number;
  /** The dispatcher's caches: an endpoint's spec, a tenant's compiled policies. */
  endpoint: PluginDeps["endpoint"];
  policies(tenant: string): Promise<CompiledPolicy[]>;
  metrics?: AgentMetrics;
  /** Name resolution for the egress guard (tests). */
  resolve?: PluginDeps["resolve"];
}

/**
 * The agents' services around the pool (docs/agents.md): the tool plugins and their provisioning,
 * the directory of inbound tools (SMTP recipients, routing), tool calls under policy and approval,
 * the model proxy, and the runtime's requests over its socket. Built before the pool (the outbox
 * relay takes the approvals subscriber at start); the pool is attached once it is open.
 */
export class AgentServices implements ToolProvisioner {
  readonly registry: ToolRegistry;
  readonly directory = new AgentDirectory();
  readonly calls: ToolCalls;
  readonly model: ModelProxy;
  private readonly clock: Clock;
  private readonly provision: ProvisionDeps;
  private pool: Pool | null = null;
  private readonly templates: TemplateCache;
  /** Tasks in flight, by runtime then task id: their event and where their spans go. */
  private readonly tasks = new Map<string, Map<string, TaskContext>>();

  constructor(private readonly deps: AgentServicesDeps) {
    this.clock = deps.clock ?? systemClock;
    this.templates = new TemplateCache(deps.storage.resources);
    this.registry = builtinTools({
      resources: deps.storage.resources,
      mailDomain: deps.mailDomain,
      smarthost: deps.smarthost,
      endpoint: deps.endpoint,
      clock: this.clock,
      resolve: deps.resolve,
    });
    this.provision = { storage: deps.storage, vault: deps.vault, registry: this.registry, directory: this.directory };
    this.model = new ModelProxy({
      vault: deps.vault,
      clock: this.clock,
      timeoutMs: deps.modelTimeoutMs,
      resolve: deps.resolve,
    });
    this.calls = new ToolCalls({
      storage: deps.storage,
      vault: deps.vault,
      registry: this.registry,
      clock: this.clock,
      policies: (tenant) => deps.policies(tenant),
      template: async (runtime) => (await this.templateOf(runtime))?.spec ?? null,
      notify: (runtimeId, type, body) => this.pool?.channel(runtimeId)?.notify(type, body),
      task: (runtimeId, taskId) => this.tasks.get(runtimeId)?.get(taskId) ?? null,
      count: (decision) => deps.metrics?.toolCalls.inc({ decision }),
    });
  }

  /** The pool, once open; then the directory is loaded from the tools that are active. */
  async attach(pool: Pool): Promise<void> {
    this.pool = pool;
    const claimed = await this.deps.storage.agents.listRuntimes({ state: "claimed", limit: 100_000 });
    for (const r of claimed)
      for (const t of await this.deps.storage.agents.listTools(r.id))
        if (t.state === "active" && r.agent) this.directory.add(t, r.agent);
  }

  // ToolProvisioner: what the pool asks at claim, sync and destroy

  planTools(req: ProvisionRequest): ToolPlan {
    // The plugins read a user tool's credentials from the claim's config; they never reach the row.
    const userConfig: Record<string, unknown> = { ...req.userConfig };
    for (const [tool, credentials] of Object.entries(req.credentials))
      userConfig[tool] = { ...(userConfig[tool] as Record<string, unknown> | undefined), credentials };
    const planned = planTools(this.provision, { tools: [...req.tools] }, userConfig);
    return { tools: req.tools, credentials: req.credentials, planned } as PlanOf;
  }

  recordToolsTx(tx: Tx, runtime: RuntimeRecord, plan: ToolPlan, actor: string): ToolRecord[] {
    return recordToolsTx(this.provision, tx, runtime, (plan as PlanOf).planned, actor);
  }

  async provisionTools(
    runtime: RuntimeRecord,
    plan: ToolPlan,
    rows: readonly ToolRecord[],
    actor: string,
  ): Promise<ProvisionResult> {
    const tools = await completeTools(this.provision, runtime, (plan as PlanOf).planned, rows, actor);
    return { tools, addresses: this.addresses(tools) };
  }

  async destroyTools(runtime: RuntimeRecord): Promise<void> {
    // Every tool of the runtime not destroyed yet: the half made and half destroyed ones too.
    await destroyTools(this.provision, runtime.id, "system");
  }

  definitions(tools: readonly TemplateTool[]): ToolDefinition[] {
    return tools.map((t) => {
      const plugin = this.registry.pluginFor(t);
      return { id: t.id, description: plugin.description, parameters: plugin.parameters };
    });
  }

  addresses(tools: readonly ToolRecord[]): Record<string, string> {
    const out: Record<string, string> = {};
    for (const t of tools) {
      if (t.state !== "active" || !t.resourceId) continue;
      if (t.plugin === "webhook") out[t.tool] = `/ingress/webhook/${t.resourceId}`;
      else if (t.plugin !== "http") out[t.tool] = t.resourceId;
    }
    return out;
  }

  // The runtime's requests over its socket

  handler(runtimeId: string): RequestHandler {
    return async (type, body) => {
      switch (type) {
        case "model.chat":
          return this.modelChat(runtimeId, body);
        case "tool.call":
          return this.calls.call(runtimeId, body);
        case "tool.provision":
          return this.selfProvision(runtimeId, body);
        case "secret.get":
          return this.secret(runtimeId, body);
        default:
          throw new AppError("invalid_input", `unknown request ${type}`);
      }
    };
  }

  private async claimed(runtimeId: string): Promise<RuntimeRecord & { tenant: string; agent: string }> {
    const r = await this.deps.storage.agents.getRuntime(runtimeId);
    if (!r || r.state !== "claimed" || !r.tenant || !r.agent)
      throw new AppError("forbidden", "this runtime is not claimed: it has no template, tools or model yet");
    return r as RuntimeRecord & { tenant: string; agent: string };
  }

  private async templateOf(runtime: RuntimeRecord) {
    if (!runtime.tenant || !runtime.template) return null;
    try {
      return await this.templates.recorded(runtime.tenant, runtime.template);
    } catch {
      return null;
    }
  }

  private async modelChat(runtimeId: string, body: Record<string, unknown>): Promise<unknown> {
    const runtime = await this.claimed(runtimeId);
    const tpl = await this.templateOf(runtime);
    if (!tpl) throw new AppError("not_found", `template ${runtime.template} is gone`);
    const task = typeof body.task_id === "string" ? this.tasks.get(runtimeId)?.get(body.task_id) : undefined;
    return this.model.chat(
      { runtimeId, tenant: runtime.tenant, template: tpl.spec, templateTenant: tpl.owner, span: task?.span },
      body,
    );
  }

  /** A tool the template allows, provisioned now if it was not at claim (a template synced since). */
  private async selfProvision(runtimeId: string, body: Record<string, unknown>): Promise<unknown> {
    const runtime = await this.claimed(runtimeId);
    const id = typeof body.tool === "string" ? body.tool : "";
    const tpl = await this.templateOf(runtime);
    const spec = tpl?.spec.tools?.find((t) => t.id === id);
    if (!tpl || !spec) {
      await this.refused(runtime, "tool.refused", `${runtime.tenant}/tools/${id || "(none)"}`, {
        reason: `tool ${id || "(none)"} is not in the template ${runtime.template}`,
      });
      throw new AppError("forbidden", `tool ${id || "(none)"} is not in the template ${runtime.template}`);
    }
    const have = (await this.deps.storage.agents.listTools(runtimeId)).find(
      (t) => t.tool === id && t.state === "active",
    );
    if (have) return have.config;
    if (spec.provisioning === "user")
      throw new AppError("forbidden", `tool ${id} needs the credentials of a claim (provisioning: user)`);
    const [made] = await provisionTools(
      this.provision,
      runtime,
      { ...(tpl.spec as TemplateSpec), tools: [spec] },
      `runtime:${runtimeId}`,
    );
    return made?.config ?? {};
  }

  /** A secret the template lists in `secrets` (the vault audits the lease); anything else refused and audited. */
  private async secret(runtimeId: string, body: Record<string, unknown>): Promise<unknown> {
    const runtime = await this.claimed(runtimeId);
    const ref = typeof body.ref === "string" ? body.ref : "";
    const tpl = await this.templateOf(runtime);
    if (!tpl?.spec.secrets?.includes(ref)) {
      await this.refused(runtime, "secret.refused", ref || "(none)", {
        reason: `secret ${ref || "(none)"} is not in the template ${runtime.template}`,
      });
      throw new AppError("forbidden", `secret ${ref || "(none)"} is not in the template ${runtime.template}`);
    }
    const lease = await this.deps.vault.lease(ref.slice("vault:".length), {
      forTenant: runtime.tenant,
      consumer: `runtime:${runtimeId}`,
    });
    const [value] = this.deps.vault.redeem(lease.id);
    return { value };
  }

  private async refused(
    runtime: RuntimeRecord,
    action: string,
    target: string,
    details: Record<string, unknown>,
  ): Promise<void> {
    await this.deps.storage.audit.append({
      actor: `runtime:${runtime.id}`,
      tenant: runtime.tenant,
      action,
      target,
      decision: "deny",
      details: { runtime: runtime.id, agent: runtime.agent, ...details },
    });
  }

  // Delivery to `agent:<name>` targets (the dispatcher's AgentTargets)

  readonly targets: AgentTargets = {
    has: (tenant, agent) => this.pool?.claimedAgent(tenant, agent) != null,
    routesFor: (envelope) => this.directory.routesFor(envelope),
    deliverToAgent: (tenant, agent, delivery, envelope, timeoutMs, trace) =>
      this.deliver(tenant, agent, delivery, envelope, timeoutMs, trace),
  };

  private async deliver(
    tenant: string,
    agent: string,
    delivery: DeliveryRow,
    envelope: Envelope,
    timeoutMs: number,
    trace: TaskTrace,
  ): Promise<Attempt> {
    const t0 = performance.now();
    const fail = (errorClass: Attempt["errorClass"], error: string): Attempt => ({
      ok: false,
      status: null,
      latencyMs: performance.now() - t0,
      excerpt: "",
      errorClass,
      error,
      retryAfterMs: null,
      remoteAddress: null,
    });
    const runtimeId = this.pool?.claimedAgent(tenant, agent) ?? null;
    const channel = runtimeId ? this.pool?.channel(runtimeId) : null;
    if (!runtimeId || !channel) return fail("connect", `agent ${agent} has no running runtime`);
    const taskId = delivery.id;
    const tasks = this.tasks.get(runtimeId) ?? new Map<string, TaskContext>();
    this.tasks.set(runtimeId, tasks);
    tasks.set(taskId, {
      eventId: delivery.eventId,
      envelope,
      span: (s: Span) => trace.push(s.name, Date.parse(s.start), s.duration_ms, s.outcome, s.detail),
    });
    try {
      const answer = (await channel.request(
        "task",
        { task_id: taskId, delivery_id: delivery.id, event: envelope },
        timeoutMs,
      )) as { status?: unknown; output?: unknown; error?: unknown } | null;
      const output = typeof answer?.output === "string" ? answer.output : JSON.stringify(answer?.output ?? null);
      if (answer?.status === "done")
        return {
          ok: true,
          status: null,
          latencyMs: performance.now() - t0,
          excerpt: output.slice(0, 512),
          errorClass: null,
          error: null,
          retryAfterMs: null,
          remoteAddress: `runtime:${runtimeId}`,
        };
      return fail(
        null,
        `the agent answered ${String(answer?.status ?? "nothing")}: ${String(answer?.error ?? output).slice(0, 300)}`,
      );
    } catch (e) {
      const timeout = isAppError(e) && e.kind === "timeout";
      return fail(timeout ? "timeout" : "connect", isAppError(e) ? e.detail : String(e));
    } finally {
      tasks.delete(taskId);
      if (!tasks.size) this.tasks.delete(runtimeId);
    }
  }
}
