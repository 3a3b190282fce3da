import { newId } from "../../core/ids.ts";
import { AppError } from "../../errors/index.ts";
import {
  type AgentStore,
  type NewRuntime,
  type NewTool,
  type NewToolCall,
  RUNTIME_STATES,
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
    const row: RuntimeRecord = {
      ...r,
      state: "starting",
      tenant: null,
      agent: null,
      template: null,
      templateVersion: null,
      userConfig: null,
      pid: null,
      readyAt: null,
      claimedAt: null,
      heartbeatAt: null,
      syncedAt: null,
      stuckAt: null,
      deletedAt: null,
      destroying: false,
      error: null,
    };
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
    if (q.after !== undefined) where.push(`id > $${params.push(q.after)}`);
    const found = await this.db.read(
      `SELECT * FROM agent_runtimes WHERE ${where.join(" AND ")} ORDER BY id LIMIT $${params.push(q.limit)}`,
      params,
    );
    return found.map(runtimes.from);
  }

  async countByState(): Promise<Record<RuntimeState, number>> {
    const counts = Object.fromEntries(RUNTIME_STATES.map((s) => [s, 0])) as Record<RuntimeState, number>;
    for (const r of await this.db.read("SELECT state, count(*) AS n FROM agent_runtimes GROUP BY state"))
      counts[r.state as RuntimeState] = num(r.n);
    return counts;
  }

  transitionRuntimeTx(tx: PgTx, id: string, from: readonly RuntimeState[], patch: RuntimePatch): RuntimeRecord | null {
    const params: unknown[] = [id, [...from]];
    const sets = runtimes.set(patch as Record<string, unknown>, params);
    if (sets.length === 0) {
      const row = this.getRuntimeTx(tx, id);
      return row && from.includes(row.state) ? row : null;
    }
    if (patch.state === "claimed") this.refuseTakenAgent(tx, id, patch.tenant, patch.agent);
    const [r] = tx.conn.query(
      `UPDATE agent_runtimes SET ${sets.join(", ")} WHERE id = $1 AND state = ANY($2::text[]) RETURNING *`,
      params,
    );
    return r ? runtimes.from(r) : null;
  }

  transitionRuntime(id: string, from: readonly RuntimeState[], patch: RuntimePatch): Promise<RuntimeRecord | null> {
    return this.committer.run((tx) => this.transitionRuntimeTx(tx, id, from, patch));
  }

  /** A conflict, not the unique index's constraint failure (which would fail the whole unit obscurely). */
  private refuseTakenAgent(tx: PgTx, id: string | null, tenant?: string | null, agent?: string | null): void {
    if (!tenant || !agent) return;
    const taken = this.findClaimedTx(tx, tenant, agent);
    if (taken && taken.id !== id) throw new AppError("conflict", `agent ${agent} is claimed in ${tenant} already`);
  }

  claimReadyTx(tx: PgTx, claim: RuntimeClaim): RuntimeRecord | null {
    this.refuseTakenAgent(tx, null, claim.tenant, claim.agent);
    const params: unknown[] = [];
    const sets = runtimes.set(
      {
        state: "claimed",
        tenant: claim.tenant,
        agent: claim.agent,
        template: claim.template,
        templateVersion: claim.templateVersion,
        userConfig: claim.userConfig,
        cold: claim.cold,
        claimedAt: tx.now,
        syncedAt: tx.now,
      },
      params,
    );
    // userConfig may be null: set() skips only undefined, so the column is written either way.
    const [r] = tx.conn.query(
      `UPDATE agent_runtimes SET ${sets.join(", ")} WHERE id = (SELECT id FROM agent_runtimes WHERE state = 'ready' ` +
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

  async liveRuntimes(): Promise<RuntimeRecord[]> {
    return (await this.db.read("SELECT * FROM agent_runtimes WHERE state <> 'deleted' ORDER BY id")).map(runtimes.from);
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
    const row: ToolRecord = { ...t, id: t.id ?? newId("tl", tx.now), createdAt: tx.now, updatedAt: tx.now };
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
    const row: ToolCallRecord = {
      ...c,
      id: c.id ?? newId("tc", tx.now),
      createdAt: tx.now,
      finishedAt: c.finishedAt ?? null,
    };
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
