/**
 * The agent pool's shared vocabulary (docs/agents.md): runtime and tool records, the launcher,
 * the per-runtime channel and the tool plugins. The store keeps the records; the pool, the tool
 * calls and the surfaces (API, CLI, console) use these types.
 */

/** A runtime's life: warm (`ready`), bound to a template and tenant (`claimed`), unresponsive (`stuck`), gone. */
export const RUNTIME_STATES = ["starting", "ready", "claimed", "stuck", "deleted"] as const;
export type RuntimeState = (typeof RUNTIME_STATES)[number];

/** How a runtime is isolated: bubblewrap (Linux), sandbox-exec (macOS), or a plain process where neither works. */
export type Isolation = "bwrap" | "sandbox-exec" | "process";

export interface RuntimeRecord {
  id: string;
  state: RuntimeState;
  isolation: Isolation;
  /** Set at claim: the tenant, the agent name (an email tool's local part) and the template with the version used. */
  tenant: string | null;
  agent: string | null;
  template: string | null;
  templateVersion: number | null;
  /** The claim's user config without its secrets (those are in the vault). */
  userConfig: Record<string, unknown> | null;
  tokenHash: string;
  dir: string;
  socket: string;
  pid: number | null;
  /** Claimed while no runtime was ready: it was started for this claim. */
  cold: boolean;
  createdAt: number;
  readyAt: number | null;
  claimedAt: number | null;
  heartbeatAt: number | null;
  syncedAt: number | null;
  stuckAt: number | null;
  deletedAt: number | null;
  /** A destroy has begun: tools first, then the process and its directory (resumed after a crash). */
  destroying: boolean;
  error: string | null;
}

export type NewRuntime = Pick<RuntimeRecord, "id" | "isolation" | "tokenHash" | "dir" | "socket" | "cold"> & {
  createdAt: number;
};

export type RuntimePatch = Partial<
  Pick<
    RuntimeRecord,
    | "state"
    | "pid"
    | "tokenHash"
    | "readyAt"
    | "heartbeatAt"
    | "syncedAt"
    | "stuckAt"
    | "deletedAt"
    | "destroying"
    | "error"
    | "templateVersion"
    | "tenant"
    | "agent"
    | "template"
    | "userConfig"
    | "claimedAt"
    | "cold"
  >
>;

export const TOOL_STATES = ["creating", "active", "destroying", "destroyed"] as const;
export type ToolState = (typeof TOOL_STATES)[number];

/** One provisioned resource of one runtime (the seed's instance_services): a plugin needs no migration. */
export interface ToolRecord {
  id: string;
  runtimeId: string;
  tenant: string;
  /** The tool's id in the template (e.g. `reply`), and the plugin that provides it (e.g. `email`). */
  tool: string;
  plugin: string;
  provisioning: "pool" | "user";
  state: ToolState;
  /** What the plugin created: an address, a binding name, an endpoint name, a number. */
  resourceId: string | null;
  /** Non-secret configuration the runtime may see. */
  config: Record<string, unknown>;
  /** Where a `provisioning: user` tool's credentials are kept. */
  secretRef: string | null;
  createdAt: number;
  updatedAt: number;
}

export const TOOL_CALL_STATES = ["refused", "denied", "awaiting_approval", "running", "done", "failed"] as const;
export type ToolCallState = (typeof TOOL_CALL_STATES)[number];

export interface ToolCallRecord {
  id: string;
  runtimeId: string;
  tenant: string;
  eventId: string | null;
  tool: string;
  args: Record<string, unknown>;
  state: ToolCallState;
  approvalId: string | null;
  /** The policy decision (effect, policy, rule, reason). */
  decision: Record<string, unknown> | null;
  result: unknown;
  error: string | null;
  createdAt: number;
  finishedAt: number | null;
}

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
}
