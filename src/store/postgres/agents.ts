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
import type { PgCommitter, PgTx } from "./committer.ts";
import { num, type PgDb } from "./db.ts";
import { Rows } from "./rows.ts";
import { agentRuntimes, agentToolCalls, agentTools } from "./schema/index.ts";

const runtimes = new Rows<RuntimeRecord>(agentRuntimes);
const tools = new Rows<ToolRecord>(agentTools);
const calls = new Rows<ToolCallRecord>(agentToolCalls);

/**
 * The agent pool's rows on PostgreSQL (src/store/sqlite/agents.ts is the model). A claim takes the
 * oldest ready runtime with FOR UPDATE SKIP LOCKED, so nodes claiming together take distinct ones;
 * an agent name claimed twice in a tenant is refused by the partial unique index, across nodes too.
 */
export class PgAgents implements AgentStore {
  constructor(
    private readonly db: PgDb,
    private readonly committer: PgCommitter,
  ) {}

  insertRuntimeTx(tx: PgTx, r: NewRuntime): RuntimeRecord {
    const row = startingRuntime(r);
    const insert = runtimes.insert(row);
    tx.conn.defer(insert.text, insert.params);
    return row;
  }

  insertRuntime(r: NewRuntime): Promise<RuntimeRecord> {
    return this.committer.run((tx) => this.insertRuntimeTx(tx, r));
  }

  getRuntimeTx(tx: PgTx, id: string): RuntimeRecord | null {
    const [r] = tx.conn.query("SELECT * FROM agent_runtimes WHERE id = $1", [id]);
    return r ? runtimes.from(r) : null;
  }

  async getRuntime(id: string): Promise<RuntimeRecord | null> {
    const [r] = await this.db.read("SELECT * FROM agent_runtimes WHERE id = $1", [id]);
    return r ? runtimes.from(r) : null;
  }

  async listRuntimes(q: RuntimeQuery): Promise<RuntimeRecord[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    if (q.tenants) where.push(`tenant = ANY($${params.push([...q.tenants])}::text[])`);
    where.push(q.state ? `state = $${params.push(q.state)}` : "state <> 'deleted'");
    if (q.node != null) where.push(`node = $${params.push(q.node)}`);
    if (q.after !== undefined) where.push(`id > $${params.push(q.after)}`);
    const found = await this.db.read(
      `SELECT * FROM agent_runtimes WHERE ${where.join(" AND ")} ORDER BY id LIMIT $${params.push(q.limit)}`,
      params,
    );
    return found.map(runtimes.from);
  }

  async countByState(): Promise<Record<RuntimeState, number>> {
    const counts = zeroCounts();
    for (const r of await this.db.read("SELECT state, count(*) AS n FROM agent_runtimes GROUP BY state"))
      counts[r.state as RuntimeState] = num(r.n);
    return counts;
  }

  transitionRuntimeTx(tx: PgTx, id: string, from: readonly RuntimeState[], patch: RuntimePatch): RuntimeRecord | null {
    const params: unknown[] = [id, [...from]];
    const sets = runtimes.set(patch as Record<string, unknown>, params);
    if (sets.length === 0) {
      return unchangedIn(this.getRuntimeTx(tx, id), from);
    }
    if (patch.state === "claimed")
      refuseTakenAgent((t, a) => this.findClaimedTx(tx, t, a), id, patch.tenant, patch.agent);
    const [r] = tx.conn.query(
      `UPDATE agent_runtimes SET ${sets.join(", ")} WHERE id = $1 AND state = ANY($2::text[]) RETURNING *`,
      params,
    );
    return r ? runtimes.from(r) : null;
  }

  transitionRuntime(id: string, from: readonly RuntimeState[], patch: RuntimePatch): Promise<RuntimeRecord | null> {
    return this.committer.run((tx) => this.transitionRuntimeTx(tx, id, from, patch));
  }

  claimReadyTx(tx: PgTx, claim: RuntimeClaim): RuntimeRecord | null {
    refuseTakenAgent((t, a) => this.findClaimedTx(tx, t, a), null, claim.tenant, claim.agent);
    const params: unknown[] = [];
    const sets = runtimes.set(claimedColumns(claim, tx.now), params);
    // Only this node's: its process, and so its socket, is here.
    const node = claim.node == null ? "" : ` AND node = $${params.push(claim.node)}`;
    // userConfig may be null: set() skips only undefined, so the column is written either way.
    const [r] = tx.conn.query(
      `UPDATE agent_runtimes SET ${sets.join(", ")} WHERE id = (SELECT id FROM agent_runtimes WHERE state = 'ready'${node} ` +
        "ORDER BY ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *",
      params,
    );
    return r ? runtimes.from(r) : null;
  }

  findClaimedTx(tx: PgTx, tenant: string, agent: string): RuntimeRecord | null {
    const [r] = tx.conn.query("SELECT * FROM agent_runtimes WHERE tenant = $1 AND agent = $2 AND state = 'claimed'", [
      tenant,
      agent,
    ]);
    return r ? runtimes.from(r) : null;
  }

  async findClaimed(tenant: string, agent: string): Promise<RuntimeRecord | null> {
    const [r] = await this.db.read(
      "SELECT * FROM agent_runtimes WHERE tenant = $1 AND agent = $2 AND state = 'claimed'",
      [tenant, agent],
    );
    return r ? runtimes.from(r) : null;
  }

  async liveRuntimes(node?: string | null): Promise<RuntimeRecord[]> {
    const rows =
      node == null
        ? await this.db.read("SELECT * FROM agent_runtimes WHERE state <> 'deleted' ORDER BY id")
        : await this.db.read("SELECT * FROM agent_runtimes WHERE state <> 'deleted' AND node = $1 ORDER BY id", [node]);
    return rows.map(runtimes.from);
  }

  heartbeat(beats: readonly { id: string; at: number }[]): Promise<void> {
    if (beats.length === 0) return Promise.resolve();
    // One statement for the batch; a runtime beating twice in it counts its latest beat.
    const latest = new Map<string, number>();
    for (const b of beats) latest.set(b.id, Math.max(latest.get(b.id) ?? b.at, b.at));
    return this.committer.run((tx) => {
      tx.conn.defer(
        "UPDATE agent_runtimes r SET heartbeat_at = greatest(coalesce(r.heartbeat_at, 0), b.at) " +
          "FROM unnest($1::text[], $2::bigint[]) AS b(id, at) WHERE r.id = b.id AND r.state <> 'deleted'",
        [[...latest.keys()], [...latest.values()]],
      );
    });
  }

  insertToolTx(tx: PgTx, t: NewTool): ToolRecord {
    const row = newTool(t, tx.now);
    const insert = tools.insert(row);
    tx.conn.defer(insert.text, insert.params);
    return row;
  }

  updateToolTx(tx: PgTx, id: string, patch: ToolPatch, from?: readonly ToolState[]): ToolRecord | null {
    const params: unknown[] = [id];
    const sets = tools.set({ ...patch, updatedAt: tx.now }, params);
    const state = from ? ` AND state = ANY($${params.push([...from])}::text[])` : "";
    const [r] = tx.conn.query(`UPDATE agent_tools SET ${sets.join(", ")} WHERE id = $1${state} RETURNING *`, params);
    return r ? tools.from(r) : null;
  }

  updateTool(id: string, patch: ToolPatch, from?: readonly ToolState[]): Promise<ToolRecord | null> {
    return this.committer.run((tx) => this.updateToolTx(tx, id, patch, from));
  }

  async getTool(id: string): Promise<ToolRecord | null> {
    const [r] = await this.db.read("SELECT * FROM agent_tools WHERE id = $1", [id]);
    return r ? tools.from(r) : null;
  }

  listToolsTx(tx: PgTx, runtimeId: string): ToolRecord[] {
    return tx.conn.query("SELECT * FROM agent_tools WHERE runtime_id = $1 ORDER BY id", [runtimeId]).map(tools.from);
  }

  async listTools(runtimeId: string): Promise<ToolRecord[]> {
    return (await this.db.read("SELECT * FROM agent_tools WHERE runtime_id = $1 ORDER BY id", [runtimeId])).map(
      tools.from,
    );
  }

  async unsettledTools(): Promise<ToolRecord[]> {
    return (await this.db.read("SELECT * FROM agent_tools WHERE state IN ('creating', 'destroying') ORDER BY id")).map(
      tools.from,
    );
  }

  async activeToolsByResource(plugin: string, resourceId: string): Promise<ToolRecord[]> {
    return (
      await this.db.read(
        "SELECT * FROM agent_tools WHERE plugin = $1 AND resource_id = $2 AND state = 'active' ORDER BY id",
        [plugin, resourceId],
      )
    ).map(tools.from);
  }

  insertToolCallTx(tx: PgTx, c: NewToolCall): ToolCallRecord {
    const row = newToolCall(c, tx.now);
    const insert = calls.insert(row);
    tx.conn.defer(insert.text, insert.params);
    return row;
  }

  transitionToolCallTx(
    tx: PgTx,
    id: string,
    from: readonly ToolCallState[],
    patch: ToolCallPatch,
  ): ToolCallRecord | null {
    const params: unknown[] = [id, [...from]];
    const sets = calls.set(patch as Record<string, unknown>, params);
    const [r] = tx.conn.query(
      `UPDATE agent_tool_calls SET ${sets.length ? sets.join(", ") : "state = state"} ` +
        "WHERE id = $1 AND state = ANY($2::text[]) RETURNING *",
      params,
    );
    return r ? calls.from(r) : null;
  }

  getToolCallTx(tx: PgTx, id: string): ToolCallRecord | null {
    const [r] = tx.conn.query("SELECT * FROM agent_tool_calls WHERE id = $1", [id]);
    return r ? calls.from(r) : null;
  }

  async getToolCall(id: string): Promise<ToolCallRecord | null> {
    const [r] = await this.db.read("SELECT * FROM agent_tool_calls WHERE id = $1", [id]);
    return r ? calls.from(r) : null;
  }

  async listToolCalls(q: {
    runtimeId?: string;
    eventId?: string;
    after?: string;
    limit: number;
  }): Promise<ToolCallRecord[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    if (q.runtimeId !== undefined) where.push(`runtime_id = $${params.push(q.runtimeId)}`);
    if (q.eventId !== undefined) where.push(`event_id = $${params.push(q.eventId)}`);
    if (q.after !== undefined) where.push(`id > $${params.push(q.after)}`);
    const found = await this.db.read(
      `SELECT * FROM agent_tool_calls${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY id LIMIT $${params.push(q.limit)}`,
      params,
    );
    return found.map(calls.from);
  }
}
