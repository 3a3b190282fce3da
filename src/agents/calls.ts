import type { TemplateSpec } from "../control/resources/specs.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { newId } from "../core/ids.ts";
import { type Envelope, type Span, spanOf } from "../events/envelope.ts";
import { AppError, isAppError } from "../errors/index.ts";
import { type CompiledPolicy, decide } from "../policy/engine.ts";
import { APPROVAL_DECIDED, type ApprovalRow, type Storage, type Tx } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import type { Subscriber } from "../workers/outbox-relay.ts";
import type { ToolRegistry } from "./tools/index.ts";
import type { RuntimeRecord, ToolCallRecord, ToolPlugin, ToolRecord } from "./types.ts";

/**
 * Every tool call under policy, approval and audit (docs/agents.md#tool-calls). A runtime's
 * `tool.call` is refused when the tool is not in its template, not provisioned, or the runtime
 * is not claimed (audited `tool.refused`); otherwise the policy engine decides with the task's
 * event (or a stand-in for a call outside a task):
 *
 * - deny (or quarantine): the call is denied, audited `tool.deny`;
 * - allow: the `tool.call` audit entry commits first, then the appliance performs the call (span
 *   `tool.call`) with the secrets the plugin needs leased for exactly that call;
 * - require_approval: the call is parked with its approval (`approval.request`) in one unit. The
 *   `approval.decided` subscriber performs an approved call the same way (its lease exists only
 *   after the decision, consumer `tool.call:<call_id>`, redeemed once by the appliance) and
 *   notifies the runtime with `tool.result`; a denied or expired one is never performed.
 *
 * The runtime never holds a credential: it sends the tool and its arguments, the appliance acts.
 */

const APPROVAL_TTL_MS = 24 * 3_600_000;
const CALL_TIMEOUT_MS = 60_000;
/** Arguments as JSON at most this long (the socket's line bounds them anyway). */
const MAX_ARGS_BYTES = 256 * 1024;

/** What the runtime gets back for a `tool.call`. */
export type ToolCallAnswer =
  | { call_id: string; status: "done"; result: unknown }
  | { call_id: string; status: "failed"; error: string }
  | { call_id: string; status: "denied"; reason: string }
  | { call_id: string; status: "awaiting_approval"; approval_id: string }
  | { status: "refused"; reason: string };

/** The task a call was made for: its event, and where the call's spans go. */
export interface TaskContext {
  eventId: string;
  envelope: Envelope;
  span(span: Span): void;
}

export interface ToolCallDeps {
  storage: Storage;
  vault: Vault;
  registry: ToolRegistry;
  clock?: Clock;
  /** The policies that decide for a tenant, in the engine's order. */
  policies(tenant: string): Promise<CompiledPolicy[]>;
  /** The template a claimed runtime runs now; null when it is gone. */
  template(runtime: RuntimeRecord): Promise<TemplateSpec | null>;
  /** A notification to a runtime (`tool.result`); dropped when it is not connected. */
  notify(runtimeId: string, type: string, body: Record<string, unknown>): void;
  /** The task a runtime works on, by the task id it sent; null when unknown. */
  task?(runtimeId: string, taskId: string): TaskContext | null;
  /** Counts decisions (agentowl_agents_tool_calls_total{decision}). */
  count?(decision: "refused" | "deny" | "allow" | "require_approval" | "approved" | "rejected"): void;
  callTimeoutMs?: number;
  approvalTtlMs?: number;
}

export class ToolCalls {
  private readonly clock: Clock;

  constructor(private readonly deps: ToolCallDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  /** A runtime's `tool.call {tool, args, task_id?}`. */
  async call(runtimeId: string, body: Record<string, unknown>): Promise<ToolCallAnswer> {
    const { storage } = this.deps;
    const tool = typeof body.tool === "string" ? body.tool : "";
    const runtime = await storage.agents.getRuntime(runtimeId);
    if (!runtime || runtime.state !== "claimed" || !runtime.tenant || !runtime.agent)
      return this.refuse(runtime, tool, null, "the runtime is not claimed");
    const task = typeof body.task_id === "string" ? (this.deps.task?.(runtimeId, body.task_id) ?? null) : null;
    const args = body.args ?? {};
    if (args === null || typeof args !== "object" || Array.isArray(args))
      return this.refuse(runtime, tool, task, "args must be a JSON object");
    if (JSON.stringify(args).length > MAX_ARGS_BYTES)
      return this.refuse(runtime, tool, task, `args are larger than ${MAX_ARGS_BYTES} bytes`);
    const template = await this.deps.template(runtime);
    if (!template?.tools?.some((t) => t.id === tool))
      return this.refuse(runtime, tool, task, `tool ${tool || "(none)"} is not in the template ${runtime.template}`);
    const resource = (await storage.agents.listTools(runtimeId)).find((t) => t.tool === tool && t.state === "active");
    if (!resource) return this.refuse(runtime, tool, task, `tool ${tool} is not provisioned for this runtime`);
    const plugin = this.deps.registry.get(resource.plugin);
    if (!plugin) return this.refuse(runtime, tool, task, `no plugin ${resource.plugin} in this appliance`);

    const tenant = runtime.tenant;
    const a = args as Record<string, unknown>;
    const envelope = task?.envelope ?? standIn(runtime, this.clock.now());
    const decision = decide(await this.deps.policies(tenant), envelope, { kind: "tool.call", tool, args: a });
    const record = {
      effect: decision.effect,
      policy: decision.policy && {
        name: decision.policy.name,
        version: decision.policy.version,
        global: decision.policy.tenant === "*",
      },
      rule: decision.rule,
      ...(decision.ruleName ? { rule_name: decision.ruleName } : {}),
      reason: decision.reason,
    };
    const id = newId("tc", this.clock.now());
    const base = {
      id,
      runtimeId,
      tenant,
      eventId: task?.eventId ?? null,
      tool,
      args: a,
      decision: record,
      result: null,
      error: null,
    };
    const target = targetOf(runtime, tool);
    const details = { call: id, runtime: runtimeId, event: task?.eventId ?? undefined, plugin: plugin.id };

    if (decision.effect === "deny" || decision.effect === "quarantine") {
      const reason =
        decision.reason ?? `${decision.policy ? `policy ${decision.policy.name}` : "policy"} says ${decision.effect}`;
      await storage.committer.run((tx) => {
        storage.agents.insertToolCallTx(tx, { ...base, state: "denied", approvalId: null, finishedAt: tx.now });
        storage.audit.appendTx(tx, {
          actor: actorOf(runtime),
          tenant,
          action: "tool.deny",
          target,
          decision: "deny",
          details: { ...details, policy: record.policy, rule: record.rule, reason },
        });
      });
      this.deps.count?.("deny");
      task?.span(spanOf("tool.call", this.clock.now(), 0, "skipped", `${tool}: denied (${reason})`));
      return { call_id: id, status: "denied", reason };
    }

    if (decision.effect === "require_approval") {
      const approval = await storage.committer.run((tx) => {
        const parked = storage.approvals.parkTx(tx, {
          tenant,
          eventId: task?.eventId ?? null,
          action: { kind: "tool.call", tool, args: a, runtime: runtimeId, call: id },
          policy: {
            ...record.policy,
            rule: record.rule,
            ...(decision.ruleName ? { rule_name: decision.ruleName } : {}),
            reason: record.reason,
          },
          expiresInMs: this.deps.approvalTtlMs ?? APPROVAL_TTL_MS,
          onExpiry: "deny",
        });
        storage.agents.insertToolCallTx(tx, { ...base, state: "awaiting_approval", approvalId: parked.id });
        return parked;
      });
      this.deps.count?.("require_approval");
      task?.span(spanOf("tool.call", this.clock.now(), 0, "skipped", `${tool}: awaiting approval ${approval.id}`));
      return { call_id: id, status: "awaiting_approval", approval_id: approval.id };
    }

    // Allow: the audit entry and the running call commit before anything leaves.
    const auditAt = this.clock.now();
    const t0 = performance.now();
    const call = await storage.committer.run((tx) => {
      const c = storage.agents.insertToolCallTx(tx, { ...base, state: "running", approvalId: null });
      this.auditCallTx(tx, runtime, c, { ...details, policy: record.policy, rule: record.rule });
      return c;
    });
    task?.span(spanOf("audit.log", auditAt, performance.now() - t0, "ok", `tool.call ${call.id}`));
    this.deps.count?.("allow");
    return this.perform(runtime, call, resource, plugin, task);
  }

  /** The `approval.decided` subscriber: approved tool calls are performed, the others closed; dispatch's follower passes these by. */
  readonly approvals: Subscriber = {
    name: "agent-tool-approvals",
    topics: [APPROVAL_DECIDED],
    handle: async (entry) => {
      const approvalId = (entry.payload as { id?: string })?.id;
      if (approvalId) await this.decided(approvalId);
    },
  };

  /** An approval decided: its call performed (approved) or closed (denied, expired to deny). Idempotent. */
  async decided(approvalId: string): Promise<void> {
    const { storage } = this.deps;
    const approval = await storage.approvals.get(approvalId);
    if (!approval || approval.action.kind !== "tool.call" || approval.state === "pending") return;
    const callId = String(approval.action.call ?? "");
    const call = await storage.agents.getToolCall(callId);
    if (!call || call.state !== "awaiting_approval") return;
    const runtime = await storage.agents.getRuntime(call.runtimeId);
    const approved = approval.state === "approved" || (approval.state === "expired" && approval.onExpiry === "approve");
    const resource = approved
      ? (await storage.agents.listTools(call.runtimeId)).find((t) => t.tool === call.tool && t.state === "active")
      : undefined;
    const plugin = resource ? this.deps.registry.get(resource.plugin) : undefined;
    const claimed = runtime?.state === "claimed" && runtime.tenant === call.tenant;
    if (!approved || !claimed || !resource || !plugin) {
      const reason = !approved
        ? `${approval.state === "expired" ? "the approval expired" : "denied"}${approval.decidedBy ? ` by ${approval.decidedBy}` : ""}${approval.reason ? `: ${approval.reason}` : ""}`
        : !claimed
          ? "the runtime is no longer claimed"
          : "the tool is no longer provisioned";
      const closed = await storage.committer.run((tx) => {
        const c = storage.agents.transitionToolCallTx(tx, call.id, ["awaiting_approval"], {
          state: approved ? "failed" : "denied",
          error: reason,
          finishedAt: tx.now,
        });
        if (c)
          storage.audit.appendTx(tx, {
            actor: "agents",
            tenant: call.tenant,
            action: approved ? "tool.failed" : "tool.deny",
            target: runtime ? targetOf(runtime, call.tool) : `${call.tenant}/tools/${call.tool}`,
            decision: approved ? null : "deny",
            details: {
              call: call.id,
              runtime: call.runtimeId,
              event: call.eventId ?? undefined,
              approval: approvalId,
              reason,
            },
          });
        return c;
      });
      if (!closed) return;
      this.deps.count?.("rejected");
      this.deps.notify(call.runtimeId, "tool.result", {
        call_id: call.id,
        status: approved ? "failed" : "denied",
        error: reason,
      });
      return;
    }
    const running = await storage.committer.run((tx) => {
      const c = storage.agents.transitionToolCallTx(tx, call.id, ["awaiting_approval"], { state: "running" });
      if (c)
        this.auditCallTx(tx, runtime!, c, {
          call: c.id,
          runtime: c.runtimeId,
          event: c.eventId ?? undefined,
          plugin: plugin.id,
          approval: approvalId,
          approved_by: approval.decidedBy,
        });
      if (c?.eventId && runtime?.agent)
        appendEventSpan(
          storage,
          tx,
          c,
          runtime.agent,
          spanOf("audit.log", tx.now, 0, "ok", `tool.call ${c.id} (approved)`),
        );
      return c;
    });
    // Another subscriber run got there first.
    if (!running) return;
    this.deps.count?.("approved");
    const answer = await this.perform(runtime!, running, resource, plugin, null, approval);
    this.deps.notify(call.runtimeId, "tool.result", {
      call_id: call.id,
      status: answer.status,
      ...("result" in answer ? { result: answer.result } : {}),
      ...("error" in answer ? { error: answer.error } : {}),
    });
  }

  /**
   * A call whose audit entry is committed: the plugin's secrets leased for exactly this call
   * (consumer `tool.call:<id>`, each lease redeemed once, here), the plugin's call, and its
   * outcome on the row.
   */
  private async perform(
    runtime: RuntimeRecord,
    call: ToolCallRecord,
    resource: ToolRecord,
    plugin: ToolPlugin,
    task: TaskContext | null,
    approval?: ApprovalRow,
  ): Promise<ToolCallAnswer> {
    const { storage, vault } = this.deps;
    const at = this.clock.now();
    const t0 = performance.now();
    let result: unknown = null;
    let error: string | null = null;
    try {
      const secrets: Record<string, string> = {};
      for (const [name, ref] of Object.entries((await plugin.secrets?.(resource)) ?? {})) {
        const lease = await vault.lease(ref.slice("vault:".length), {
          forTenant: call.tenant,
          consumer: `tool.call:${call.id}`,
        });
        const [value] = vault.redeem(lease.id);
        if (value === undefined) throw new AppError("unavailable", `${ref} has no valid version`);
        secrets[name] = value;
      }
      const signal = AbortSignal.timeout(this.deps.callTimeoutMs ?? CALL_TIMEOUT_MS);
      result = await plugin.call({
        tenant: call.tenant,
        runtimeId: call.runtimeId,
        agent: runtime.agent!,
        callId: call.id,
        resource,
        args: call.args,
        secrets,
        signal,
      });
    } catch (e) {
      error = isAppError(e) ? e.detail : String((e as Error)?.message ?? e);
    }
    const detail = `${call.tool}${approval ? ` (approved by ${approval.decidedBy ?? "expiry"})` : ""}: ${error ?? "done"}`;
    const span = spanOf("tool.call", at, performance.now() - t0, error ? "error" : "ok", detail);
    task?.span(span);
    await storage.committer.run((tx) => {
      storage.agents.transitionToolCallTx(tx, call.id, ["running"], {
        state: error ? "failed" : "done",
        result: error ? null : (result ?? null),
        error,
        finishedAt: tx.now,
      });
      // A call outside a task keeps its span with its event, when it has one.
      if (!task && call.eventId) appendEventSpan(storage, tx, call, runtime.agent!, span);
    });
    return error ? { call_id: call.id, status: "failed", error } : { call_id: call.id, status: "done", result };
  }

  private async refuse(
    runtime: RuntimeRecord | null,
    tool: string,
    task: TaskContext | null,
    reason: string,
  ): Promise<ToolCallAnswer> {
    const { storage } = this.deps;
    const tenant = runtime?.state === "claimed" ? runtime.tenant : null;
    await storage.committer.run((tx) => {
      if (runtime && tenant)
        storage.agents.insertToolCallTx(tx, {
          runtimeId: runtime.id,
          tenant,
          eventId: task?.eventId ?? null,
          tool: tool || "(none)",
          args: {},
          state: "refused",
          approvalId: null,
          decision: null,
          result: null,
          error: reason,
          finishedAt: tx.now,
        });
      storage.audit.appendTx(tx, {
        actor: runtime ? actorOf(runtime) : "runtime:unknown",
        tenant,
        action: "tool.refused",
        target: runtime && tenant ? targetOf(runtime, tool) : `runtimes/${runtime?.id ?? "unknown"}`,
        decision: "deny",
        details: { runtime: runtime?.id ?? null, tool, reason, event: task?.eventId ?? undefined },
      });
    });
    this.deps.count?.("refused");
    return { status: "refused", reason };
  }

  private auditCallTx(tx: Tx, runtime: RuntimeRecord, call: ToolCallRecord, details: Record<string, unknown>): void {
    this.deps.storage.audit.appendTx(tx, {
      actor: actorOf(runtime),
      tenant: call.tenant,
      action: "tool.call",
      target: targetOf(runtime, call.tool),
      decision: "allow",
      details,
    });
  }
}

const actorOf = (r: RuntimeRecord) => `runtime:${r.id}`;
const targetOf = (r: RuntimeRecord, tool: string) => `${r.tenant}/agents/${r.agent}/tools/${tool}`;

/**
 * The event the policy sees for a call outside a task: the runtime's tenant and agent, nothing
 * else (a rule on a field of a real event does not hold for it).
 */
function standIn(runtime: RuntimeRecord, at: number): Envelope {
  return {
    id: "",
    version: 1,
    // Neither a type nor a channel of a real event: rules on those do not hold for a call outside a task.
    type: "agent.tool_call" as Envelope["type"],
    tenant: runtime.tenant!,
    agent: runtime.agent,
    channel: "agent" as Envelope["channel"],
    source: { binding: `agent:${runtime.agent}` },
    received_at: new Date(at).toISOString(),
    trace_id: "",
    idempotency_key: null,
    data: {},
  };
}

/** An approved call's span, on its event's trace: with the delivery of that event to this agent. */
function appendEventSpan(storage: Storage, tx: Tx, call: ToolCallRecord, agent: string, span: Span): void {
  const d = storage.events.latestDeliveryTx(tx, call.eventId!, `agent:${agent}`);
  if (d) storage.events.appendSpansTx(tx, d.id, [span]);
}
