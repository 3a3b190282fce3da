import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { ISOLATIONS, RUNTIME_STATES, TOOL_CALL_STATES, TOOL_STATES } from "../contract.ts";

/**
 * The agent pool's runtimes (docs/agents.md): starting → ready → claimed → stuck → deleted, with
 * `destroying` set while a destroy is under way (a restart resumes it). The token is kept only as
 * its SHA-256.
 */
export const agentRuntimes = sqliteTable(
  "agent_runtimes",
  {
    id: text("id").primaryKey(),
    state: text("state", { enum: RUNTIME_STATES }).notNull(),
    isolation: text("isolation", { enum: ISOLATIONS }).notNull(),
    tenant: text("tenant"),
    agent: text("agent"),
    template: text("template"),
    templateVersion: integer("template_version"),
    /** The claim's user config without its secrets. */
    userConfig: text("user_config", { mode: "json" }).$type<Record<string, unknown>>(),
    tokenHash: text("token_hash").notNull(),
    dir: text("dir").notNull(),
    socket: text("socket").notNull(),
    pid: integer("pid"),
    cold: integer("cold", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
    readyAt: integer("ready_at"),
    claimedAt: integer("claimed_at"),
    heartbeatAt: integer("heartbeat_at"),
    syncedAt: integer("synced_at"),
    stuckAt: integer("stuck_at"),
    deletedAt: integer("deleted_at"),
    destroying: integer("destroying", { mode: "boolean" }).notNull().default(false),
    error: text("error"),
    /**
     * The node whose process runs it, on a database several nodes share (docs/architecture.md#several-nodes):
     * only that node claims, checks and destroys it. Null on SQLite, where one process is the only node.
     */
    node: text("node"),
  },
  (t) => [
    // The claim's pick: the oldest ready runtime, from the index alone.
    index("agent_runtimes_ready").on(t.readyAt).where(sql`state = 'ready'`),
    index("agent_runtimes_state").on(t.state),
    index("agent_runtimes_tenant").on(t.tenant, t.id),
    // An agent name is claimed at most once per tenant.
    uniqueIndex("agent_runtimes_claimed").on(t.tenant, t.agent).where(sql`state = 'claimed'`),
  ],
);

/** One provisioned resource of one runtime (the seed's instance_services): a new plugin needs no migration. */
export const agentTools = sqliteTable(
  "agent_tools",
  {
    id: text("id").primaryKey(),
    runtimeId: text("runtime_id").notNull(),
    tenant: text("tenant").notNull(),
    tool: text("tool").notNull(),
    plugin: text("plugin").notNull(),
    provisioning: text("provisioning", { enum: ["pool", "user"] }).notNull(),
    state: text("state", { enum: TOOL_STATES }).notNull(),
    resourceId: text("resource_id"),
    config: text("config", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    secretRef: text("secret_ref"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    index("agent_tools_runtime").on(t.runtimeId, t.id),
    // Routing: which runtime an address, a binding or a number belongs to.
    index("agent_tools_resource").on(t.plugin, t.resourceId).where(sql`state = 'active'`),
    index("agent_tools_unsettled").on(t.state).where(sql`state IN ('creating', 'destroying')`),
  ],
);

/** Every tool call a runtime made, with the policy's decision and what came of it. */
export const agentToolCalls = sqliteTable(
  "agent_tool_calls",
  {
    id: text("id").primaryKey(),
    runtimeId: text("runtime_id").notNull(),
    tenant: text("tenant").notNull(),
    eventId: text("event_id"),
    tool: text("tool").notNull(),
    args: text("args", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    state: text("state", { enum: TOOL_CALL_STATES }).notNull(),
    approvalId: text("approval_id"),
    decision: text("decision", { mode: "json" }).$type<Record<string, unknown>>(),
    result: text("result", { mode: "json" }).$type<unknown>(),
    error: text("error"),
    createdAt: integer("created_at").notNull(),
    finishedAt: integer("finished_at"),
  },
  (t) => [
    index("agent_tool_calls_runtime").on(t.runtimeId, t.id),
    index("agent_tool_calls_event").on(t.eventId, t.id).where(sql`event_id IS NOT NULL`),
  ],
);
