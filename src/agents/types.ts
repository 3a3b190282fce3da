/**
 * The agent pool's shared vocabulary (docs/agents.md): runtime and tool records, the launcher,
 * the per-runtime channel and the tool plugins. The store keeps the records; the pool, the tool
 * calls and the surfaces (API, CLI, console) use these types.
 */

// The records are the store's (src/store/contract.ts), re-exported here: the store imports no domain module.
export {
  ISOLATIONS,
  RUNTIME_STATES,
  TOOL_CALL_STATES,
  TOOL_STATES,
  type Isolation,
  type NewRuntime,
  type NewTool,
  type NewToolCall,
  type RuntimePatch,
  type RuntimeRecord,
  type RuntimeState,
  type ToolCallPatch,
  type ToolCallRecord,
  type ToolCallState,
  type ToolPatch,
  type ToolRecord,
  type ToolState,
} from "../store/index.ts";
import type { Isolation, RuntimeRecord, RuntimeState, ToolRecord, Tx } from "../store/index.ts";

// The runtime's process

export interface RuntimeLimits {
  memoryBytes: number;
  /** CPU share as a fraction of one core (cgroup cpu.max) where cgroups are writable. */
  cpu: number;
  openFiles: number;
  processes: number;
}

export interface LaunchSpec {
  id: string;
  /** The runtime's own directory (0700), its only writable path. */
  dir: string;
  /** The Unix socket the appliance listens on for this runtime. */
  socket: string;
  token: string;
  /** The program to run; default: this executable's `runtime` command. */
  command?: readonly string[];
  /** Host paths a `command` needs (its interpreter, its script), bound read-only at the same path in a bwrap sandbox. */
  readOnlyPaths?: readonly string[];
  /** The appliance's data directory, denied to the runtime by sandbox-exec (default: three levels above `dir`). */
  dataDir?: string;
  limits: RuntimeLimits;
  /** Each line of stdout/stderr, tagged. */
  onOutput(stream: "stdout" | "stderr", line: string): void;
  onExit(code: number | null, signal: string | null): void;
}

export interface LaunchedRuntime {
  readonly pid: number;
  readonly isolation: Isolation;
  /** How the limits are enforced: `cgroup`, `rlimit`, or `none` (said in `agents show`). */
  readonly limitsBy: "cgroup" | "rlimit" | "none";
  /** The last lines of output (bounded). */
  lines(): string[];
  /** SIGTERM to the process group, SIGKILL after a grace period; resolves once it exited. */
  kill(graceMs?: number): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
}

// The appliance's side of one runtime's socket

export type RequestHandler = (type: string, body: Record<string, unknown>) => Promise<unknown>;

export interface RuntimeChannel {
  readonly runtimeId: string;
  /** Resolves once the runtime connected and answered hello with its token; rejects on a wrong token or timeout. */
  readonly authenticated: Promise<void>;
  /** A request to the runtime, answered within `timeoutMs` (AppError `timeout` otherwise). */
  request(type: string, body: Record<string, unknown>, timeoutMs: number): Promise<unknown>;
  notify(type: string, body: Record<string, unknown>): void;
  /** Requests from the runtime (model.chat, tool.call, tool.provision, secret.get). */
  onRequest(handler: RequestHandler): void;
  /** Any message from the runtime (heartbeats included), with the time it arrived (the channel's clock). */
  onActivity(fn: (at: number) => void): void;
  close(): Promise<void>;
}

// Tool plugins

export interface ToolContext {
  tenant: string;
  runtimeId: string;
  agent: string;
  tool: string;
  /** The template's `config` for this tool, merged with the claim's non-secret user config for it. */
  config: Record<string, unknown>;
  /** `provisioning: user`: the credentials the claim supplied (validated by the plugin, kept in the vault). */
  credentials?: Record<string, string>;
}

export interface Provisioned {
  resourceId: string;
  /** Non-secret, shown to the runtime and in `agents show`. */
  config: Record<string, unknown>;
}

export interface ToolCallContext {
  tenant: string;
  runtimeId: string;
  agent: string;
  callId: string;
  resource: ToolRecord;
  args: Record<string, unknown>;
  /** Secrets leased for exactly this call (by the appliance; never sent to the runtime). */
  secrets: Record<string, string>;
  signal: AbortSignal;
}

export interface ToolPlugin {
  readonly id: string;
  readonly description: string;
  readonly provisioning: readonly ("pool" | "user")[];
  /** JSON Schema of the tool's arguments, offered to the model as the function's parameters. */
  readonly parameters: Record<string, unknown>;
  /** Checks the user credentials of a `provisioning: user` tool; throws AppError `invalid` with what is wrong. */
  validateCredentials?(credentials: Record<string, unknown>): Record<string, string>;
  create(ctx: ToolContext): Promise<Provisioned>;
  update(ctx: ToolContext, current: ToolRecord): Promise<Provisioned>;
  destroy(current: ToolRecord): Promise<void>;
  /**
   * The vault references a call of this resource needs, by name (`signing`, `api_key`): the
   * appliance leases each for exactly that call and hands the values in `ToolCallContext.secrets`.
   */
  secrets?(current: ToolRecord): Promise<Record<string, string>>;
  call(ctx: ToolCallContext): Promise<unknown>;
}

// The pool, as the API, the CLI and the console use it

export interface ClaimRequest {
  tenant: string;
  template: string;
  /** The agent's name in its tenant (an email tool's local part); unique among the tenant's claimed agents. */
  agent: string;
  /** Per tool id: non-secret settings and, for `provisioning: user` tools, credentials (kept in the vault). */
  userConfig?: Record<string, unknown>;
}

export interface ClaimResult {
  runtime: RuntimeRecord;
  cold: boolean;
  tools: ToolRecord[];
  /** Where the agent can be reached: its email address, webhook path, number, by tool id. */
  addresses: Record<string, string>;
  claimMs: number;
}

export interface PoolStatus {
  minIdle: number;
  isolation: Isolation;
  /** Why isolation is `process`, when it is. */
  isolationReason: string | null;
  byState: Record<RuntimeState, number>;
  onEmpty: "cold" | "429";
}

export interface AgentPool {
  status(): Promise<PoolStatus>;
  setMinIdle(n: number, actor: string): Promise<void>;
  claim(req: ClaimRequest, actor: string): Promise<ClaimResult>;
  release(tenant: string, id: string, actor: string): Promise<RuntimeRecord>;
  destroy(tenant: string | null, id: string, actor: string): Promise<RuntimeRecord>;
  /** Roll the template's current version onto one claimed runtime, or every runtime of the template. */
  sync(tenant: string, target: { id: string } | { template: string }, actor: string): Promise<RuntimeRecord[]>;
  get(id: string): Promise<RuntimeRecord | null>;
  list(q: {
    tenants?: readonly string[];
    state?: RuntimeState;
    after?: string;
    limit: number;
  }): Promise<RuntimeRecord[]>;
  tools(runtimeId: string): Promise<ToolRecord[]>;
  /** The runtime's last output lines, each `{at, stream, line}`. */
  logs(id: string): { at: number; stream: "stdout" | "stderr"; line: string }[];
  /** The open channel of a live runtime (tasks are sent over it), or null. */
  channel(id: string): RuntimeChannel | null;
}

// Tool provisioning as the pool calls it (src/agents/tools/ implements it)

/** A tool as `configure` offers it to the runtime (and the runtime to its model). */
export interface ToolDefinition {
  id: string;
  description: string;
  parameters: Record<string, unknown>;
}

/** A template's tool as the pool reads it from the template resource. */
export interface TemplateTool {
  id: string;
  provisioning: "pool" | "user";
  config?: Record<string, unknown>;
}

export interface ProvisionRequest {
  tools: readonly TemplateTool[];
  /** Per tool id: the claim's non-secret settings (kept on the runtime's row). */
  userConfig: Record<string, unknown>;
  /** Per tool id: the `credentials` the claim supplied for it (`user_config.<tool>.credentials`; never stored on the row). */
  credentials: Record<string, Record<string, unknown>>;
}

/** A claim's tools, checked; what the provisioner needs besides is its own. */
export interface ToolPlan {
  readonly tools: readonly TemplateTool[];
  readonly credentials: Record<string, Record<string, unknown>>;
}

export interface ProvisionResult {
  tools: ToolRecord[];
  /** Where the agent can be reached, by tool id (an address, a webhook path, a number). */
  addresses: Record<string, string>;
}

/**
 * What the pool needs of tool provisioning: create a claimed runtime's tools (one row each, audited by
 * the provisioning), describe them to the runtime, and destroy them (every tool not yet destroyed, or
 * the ones given: what a crash left in 'creating' or 'destroying'). Creating is three steps so that
 * a claim is one commit: the tools checked before it, their rows and audit entries written in the
 * claim's own unit, the resources made once it committed.
 */
export interface ToolProvisioner {
  /** Every tool checked (plugin, provisioning kind, credentials) before anything is written; throws what is wrong. */
  planTools(req: ProvisionRequest): ToolPlan;
  /** In the claim's unit of work: one `creating` row per tool and its `tool.provision` audit entry. */
  recordToolsTx(tx: Tx, runtime: RuntimeRecord, plan: ToolPlan, actor: string): ToolRecord[];
  /** After that unit committed: every tool made, then all `active` in one unit. */
  provisionTools(
    runtime: RuntimeRecord,
    plan: ToolPlan,
    rows: readonly ToolRecord[],
    actor: string,
  ): Promise<ProvisionResult>;
  destroyTools(runtime: RuntimeRecord, only?: readonly ToolRecord[]): Promise<void>;
  definitions(tools: readonly TemplateTool[]): ToolDefinition[];
  /** The addresses of tools already provisioned (for a relaunched or synced runtime). */
  addresses(tools: readonly ToolRecord[]): Record<string, string>;
}
