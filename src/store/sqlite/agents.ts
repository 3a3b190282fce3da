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
import type { Db } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";
import { type Same, same } from "./same.ts";

same<Same<RuntimeRecord, typeof agentRuntimes.$inferSelect>>(true);
same<Same<ToolRecord, typeof agentTools.$inferSelect>>(true);
same<Same<ToolCallRecord, typeof agentToolCalls.$inferSelect>>(true);

/** The agent pool's rows (src/store/schema/agents.ts); the pool's rules are src/agents/'s. */
export class SqliteAgents implements AgentStore {
  // The claim's statements, prepared once: drizzle's builder cost more than running them (about
  // 0.3 ms of a warm claim's 1.2 ms, bench/agents.ts).
  private readonly claimedQ;
  private readonly claimReadyQ;

  constructor(
    private readonly db: Db,
    private readonly committer: SqliteCommitter,
  ) {
    const p = (name: string) => sql.placeholder(name);
    /** A placeholder as a value of `set`, which takes SQL, not a placeholder. */
    const v = (name: string) => sql`${p(name)}`;
    this.claimedQ = db
      .select()
      .from(agentRuntimes)
      .where(
        and(
          eq(agentRuntimes.tenant, p("tenant")),
          eq(agentRuntimes.agent, p("agent")),
          eq(agentRuntimes.state, "claimed"),
        ),
      )
      .prepare();
    // The columns of claimedColumns, each a placeholder (JSON and booleans as the driver stores them).
    this.claimReadyQ = db
      .update(agentRuntimes)
      .set({
        state: "claimed",
        tenant: v("tenant"),
        agent: v("agent"),
        template: v("template"),
        templateVersion: v("templateVersion"),
        userConfig: v("userConfig"),
        cold: v("cold"),
        claimedAt: v("now"),
        syncedAt: v("now"),
      })
      .where(
        eq(
          agentRuntimes.id,
          sql`(SELECT id FROM agent_runtimes WHERE state = 'ready' AND (${p("node")} IS NULL OR node = ${p("node")}) ORDER BY ready_at, id LIMIT 1)`,
        ),
      )
      .returning()
      .prepare();
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
    return (
      this.claimReadyQ.get({
        tenant: c.tenant,
        agent: c.agent,
        template: c.template,
        templateVersion: c.templateVersion,
        userConfig: c.userConfig == null ? null : JSON.stringify(c.userConfig),
        cold: c.cold ? 1 : 0,
        now: c.claimedAt,
        node: claim.node ?? null,
      }) ?? null
    );
  }

  findClaimedTx(tx: SqliteTx, tenant: string, agent: string): RuntimeRecord | null {
    return this.claimed(tenant, agent);
  }

  async findClaimed(tenant: string, agent: string): Promise<RuntimeRecord | null> {
    return this.claimed(tenant, agent);
  }

  /** On the one connection: inside a unit it reads the unit's transaction. */
  private claimed(tenant: string, agent: string): RuntimeRecord | null {
    return this.claimedQ.get({ tenant, agent }) ?? null;
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
