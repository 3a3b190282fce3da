import { and, asc, eq, gt, inArray, ne, sql } from "drizzle-orm";
import {
  claimedColumns,
  newTool,
  newToolCall,
  refuseTakenAgent,
  startingRuntime,
  unchangedIn,
  zeroCounts,
} from "../agent-rows.ts";
import {
  type AgentStore,
  type NewRuntime,
  type NewTool,
  type NewToolCall,
  type RuntimeClaim,
  type RuntimePatch,
  type RuntimeQuery,
  type RuntimeRecord,
  type RuntimeState,
  type ToolCallPatch,
  type ToolCallRecord,
  type ToolCallState,
  type ToolPatch,
  type ToolRecord,
  type ToolState,
} from "../contract.ts";
import { agentRuntimes, agentToolCalls, agentTools } from "../schema/index.ts";
import type { Db, SqliteHandle } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

same<Same<RuntimeRecord, typeof agentRuntimes.$inferSelect>>(true);
same<Same<ToolRecord, typeof agentTools.$inferSelect>>(true);
same<Same<ToolCallRecord, typeof agentToolCalls.$inferSelect>>(true);

/** agent_runtimes' columns under RuntimeRecord's names: a row as bun:sqlite reads it. */
const RUNTIME_COLUMNS =
  "id, state, isolation, tenant, agent, template, template_version AS templateVersion, user_config AS userConfig, " +
  "token_hash AS tokenHash, dir, socket, pid, cold, created_at AS createdAt, ready_at AS readyAt, " +
  "claimed_at AS claimedAt, heartbeat_at AS heartbeatAt, synced_at AS syncedAt, stuck_at AS stuckAt, " +
  "deleted_at AS deletedAt, destroying, error, node";

/** The row before its JSON and booleans are decoded, as drizzle's column modes would. */
type RuntimeRow = Omit<RuntimeRecord, "userConfig" | "cold" | "destroying"> & {
  userConfig: string | null;
  cold: number;
  destroying: number;
};

const runtimeOf = (r: RuntimeRow): RuntimeRecord => ({
  ...r,
  userConfig: r.userConfig === null ? null : (JSON.parse(r.userConfig) as Record<string, unknown>),
  cold: r.cold !== 0,
  destroying: r.destroying !== 0,
});

/** The agent pool's rows (src/store/schema/agents.ts); the pool's rules are src/agents/'s. */
export class SqliteAgents implements AgentStore {
  // The claim's two statements, plain bun:sqlite prepared once: drizzle's builder cost more than
  // running them (about 0.3 ms of a warm claim's 1.2 ms), and its prepared queries still cost
  // 20-120 µs a call in the claim's unit against 1-6 µs for the same SQL here (the first drizzle
  // query of a unit paid the most), time the commit and the runtime's configure wait for
  // (bench/agents.ts, docs/performance.md).
  private readonly claimedQ;
  private readonly claimReadyQ;
  private readonly db: Db;

  constructor(
    handle: SqliteHandle,
    private readonly committer: SqliteCommitter,
  ) {
    this.db = handle.db;
    this.claimedQ = handle.sqlite.prepare<RuntimeRow, [string, string]>(
      `SELECT ${RUNTIME_COLUMNS} FROM agent_runtimes WHERE tenant = ?1 AND agent = ?2 AND state = 'claimed'`,
    );
    // The oldest ready runtime (of this node, on a shared database), claimed in one statement.
    this.claimReadyQ = handle.sqlite.prepare<
      RuntimeRow,
      [string, string, string, number, string | null, number, number, string | null]
    >(
      "UPDATE agent_runtimes SET state = 'claimed', tenant = ?1, agent = ?2, template = ?3, template_version = ?4, " +
        "user_config = ?5, cold = ?6, claimed_at = ?7, synced_at = ?7 " +
        "WHERE id = (SELECT id FROM agent_runtimes WHERE state = 'ready' AND (?8 IS NULL OR node = ?8) " +
        `ORDER BY ready_at, id LIMIT 1) RETURNING ${RUNTIME_COLUMNS}`,
    );
  }

  insertRuntimeTx(tx: SqliteTx, r: NewRuntime): RuntimeRecord {
    const row = startingRuntime(r);
    tx.db.insert(agentRuntimes).values(row).run();
    return row;
  }

  insertRuntime(r: NewRuntime): Promise<RuntimeRecord> {
    return this.committer.run((tx) => this.insertRuntimeTx(tx, r));
  }

  private runtime(db: Db, id: string): RuntimeRecord | null {
    return db.select().from(agentRuntimes).where(eq(agentRuntimes.id, id)).get() ?? null;
  }

  getRuntimeTx(tx: SqliteTx, id: string): RuntimeRecord | null {
    return this.runtime(tx.db, id);
  }

  async getRuntime(id: string): Promise<RuntimeRecord | null> {
    return this.runtime(this.db, id);
  }

  async listRuntimes(q: RuntimeQuery): Promise<RuntimeRecord[]> {
    return this.db
      .select()
      .from(agentRuntimes)
      .where(
        and(
          q.tenants ? inArray(agentRuntimes.tenant, [...q.tenants]) : undefined,
          q.state ? eq(agentRuntimes.state, q.state) : ne(agentRuntimes.state, "deleted"),
          q.node != null ? eq(agentRuntimes.node, q.node) : undefined,
          q.after !== undefined ? gt(agentRuntimes.id, q.after) : undefined,
        ),
      )
      .orderBy(asc(agentRuntimes.id))
      .limit(q.limit)
      .all();
  }

  async countByState(): Promise<Record<RuntimeState, number>> {
    const counts = zeroCounts();
    const rows = this.db
      .select({ state: agentRuntimes.state, n: sql<number>`count(*)` })
      .from(agentRuntimes)
      .groupBy(agentRuntimes.state)
      .all();
    for (const r of rows) counts[r.state] = r.n;
    return counts;
  }

  transitionRuntimeTx(
    tx: SqliteTx,
    id: string,
    from: readonly RuntimeState[],
    patch: RuntimePatch,
  ): RuntimeRecord | null {
    if (Object.keys(patch).length === 0) {
      return unchangedIn(this.runtime(tx.db, id), from);
    }
    if (patch.state === "claimed")
      refuseTakenAgent((t, a) => this.findClaimedTx(tx, t, a), id, patch.tenant, patch.agent);
    return (
      tx.db
        .update(agentRuntimes)
        .set(patch)
        .where(and(eq(agentRuntimes.id, id), inArray(agentRuntimes.state, [...from])))
        .returning()
        .get() ?? null
    );
  }

  transitionRuntime(id: string, from: readonly RuntimeState[], patch: RuntimePatch): Promise<RuntimeRecord | null> {
    return this.committer.run((tx) => this.transitionRuntimeTx(tx, id, from, patch));
  }

  claimReadyTx(tx: SqliteTx, claim: RuntimeClaim): RuntimeRecord | null {
    refuseTakenAgent((t, a) => this.findClaimedTx(tx, t, a), null, claim.tenant, claim.agent);
    const c = claimedColumns(claim, tx.now);
    const row = this.claimReadyQ.get(
      c.tenant,
      c.agent,
      c.template,
      c.templateVersion,
      c.userConfig == null ? null : JSON.stringify(c.userConfig),
      c.cold ? 1 : 0,
      c.claimedAt,
      claim.node ?? null,
    );
    return row ? runtimeOf(row) : null;
  }

  findClaimedTx(tx: SqliteTx, tenant: string, agent: string): RuntimeRecord | null {
    return this.claimed(tenant, agent);
  }

  async findClaimed(tenant: string, agent: string): Promise<RuntimeRecord | null> {
    return this.claimed(tenant, agent);
  }

  /** On the one connection: inside a unit it reads the unit's transaction. */
  private claimed(tenant: string, agent: string): RuntimeRecord | null {
    const row = this.claimedQ.get(tenant, agent);
    return row ? runtimeOf(row) : null;
  }

  async liveRuntimes(node?: string | null): Promise<RuntimeRecord[]> {
    return this.db
      .select()
      .from(agentRuntimes)
      .where(and(ne(agentRuntimes.state, "deleted"), node == null ? undefined : eq(agentRuntimes.node, node)))
      .orderBy(asc(agentRuntimes.id))
      .all();
  }

  heartbeat(beats: readonly { id: string; at: number }[]): Promise<void> {
    if (beats.length === 0) return Promise.resolve();
    return this.committer.run((tx) => {
      for (const b of beats)
        tx.db
          .update(agentRuntimes)
          .set({ heartbeatAt: sql`max(coalesce(${agentRuntimes.heartbeatAt}, 0), ${b.at})` })
          .where(and(eq(agentRuntimes.id, b.id), ne(agentRuntimes.state, "deleted")))
          .run();
    });
  }

  insertToolTx(tx: SqliteTx, t: NewTool): ToolRecord {
    const row = newTool(t, tx.now);
    tx.db.insert(agentTools).values(row).run();
    return row;
  }

  updateToolTx(tx: SqliteTx, id: string, patch: ToolPatch, from?: readonly ToolState[]): ToolRecord | null {
    return (
      tx.db
        .update(agentTools)
        .set({ ...patch, updatedAt: tx.now })
        .where(and(eq(agentTools.id, id), from ? inArray(agentTools.state, [...from]) : undefined))
        .returning()
        .get() ?? null
    );
  }

  updateTool(id: string, patch: ToolPatch, from?: readonly ToolState[]): Promise<ToolRecord | null> {
    return this.committer.run((tx) => this.updateToolTx(tx, id, patch, from));
  }

  async getTool(id: string): Promise<ToolRecord | null> {
    return this.db.select().from(agentTools).where(eq(agentTools.id, id)).get() ?? null;
  }

  private tools(db: Db, runtimeId: string): ToolRecord[] {
    return db.select().from(agentTools).where(eq(agentTools.runtimeId, runtimeId)).orderBy(asc(agentTools.id)).all();
  }

  listToolsTx(tx: SqliteTx, runtimeId: string): ToolRecord[] {
    return this.tools(tx.db, runtimeId);
  }

  async listTools(runtimeId: string): Promise<ToolRecord[]> {
    return this.tools(this.db, runtimeId);
  }

  async unsettledTools(): Promise<ToolRecord[]> {
    return this.db
      .select()
      .from(agentTools)
      .where(inArray(agentTools.state, ["creating", "destroying"]))
      .orderBy(asc(agentTools.id))
      .all();
  }

  async activeToolsByResource(plugin: string, resourceId: string): Promise<ToolRecord[]> {
    return this.db
      .select()
      .from(agentTools)
      .where(and(eq(agentTools.plugin, plugin), eq(agentTools.resourceId, resourceId), eq(agentTools.state, "active")))
      .orderBy(asc(agentTools.id))
      .all();
  }

  insertToolCallTx(tx: SqliteTx, c: NewToolCall): ToolCallRecord {
    const row = newToolCall(c, tx.now);
    tx.db.insert(agentToolCalls).values(row).run();
    return row;
  }

  transitionToolCallTx(
    tx: SqliteTx,
    id: string,
    from: readonly ToolCallState[],
    patch: ToolCallPatch,
  ): ToolCallRecord | null {
    const set = Object.keys(patch).length > 0 ? patch : { state: sql`${agentToolCalls.state}` };
    return (
      tx.db
        .update(agentToolCalls)
        .set(set as ToolCallPatch)
        .where(and(eq(agentToolCalls.id, id), inArray(agentToolCalls.state, [...from])))
        .returning()
        .get() ?? null
    );
  }

  private call(db: Db, id: string): ToolCallRecord | null {
    return db.select().from(agentToolCalls).where(eq(agentToolCalls.id, id)).get() ?? null;
  }

  getToolCallTx(tx: SqliteTx, id: string): ToolCallRecord | null {
    return this.call(tx.db, id);
  }

  async getToolCall(id: string): Promise<ToolCallRecord | null> {
    return this.call(this.db, id);
  }

  async listToolCalls(q: {
    runtimeId?: string;
    eventId?: string;
    after?: string;
    limit: number;
  }): Promise<ToolCallRecord[]> {
    return this.db
      .select()
      .from(agentToolCalls)
      .where(
        and(
          q.runtimeId !== undefined ? eq(agentToolCalls.runtimeId, q.runtimeId) : undefined,
          q.eventId !== undefined ? eq(agentToolCalls.eventId, q.eventId) : undefined,
          q.after !== undefined ? gt(agentToolCalls.id, q.after) : undefined,
        ),
      )
      .orderBy(asc(agentToolCalls.id))
      .limit(q.limit)
      .all();
  }
}
