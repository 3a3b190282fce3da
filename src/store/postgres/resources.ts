import type { ResourceKey, ResourceRecord, ResourceStore } from "../contract.ts";
import { type ResourceChange, ResourceWrites } from "../resource-writes.ts";
import type { PgCommitter, PgTx } from "./committer.ts";
import { num, type PgDb } from "./db.ts";
import { Rows } from "./rows.ts";
import { resources } from "./schema/index.ts";

const rows = new Rows<ResourceRecord>(resources);
/** The channel a commit that changed resources notifies, so every node's `generation` moves. */
export const RESOURCES_CHANNEL = "agentowl_resources";

const BY_KEY = "SELECT * FROM resources WHERE tenant = $1 AND kind = $2 AND name = $3";

/**
 * Control-plane resources on PostgreSQL (the writes' rules: ../resource-writes.ts). Two nodes racing
 * on the same If-Match are serialized by the row: a write reads it FOR UPDATE, so the second waits
 * for the first's commit and then sees its resource_version (412). A commit that changed resources
 * notifies the other nodes, whose `generation` moves when they hear it.
 */
export class PgResources extends ResourceWrites<PgTx> implements ResourceStore {
  constructor(
    private readonly db: PgDb,
    committer: PgCommitter,
  ) {
    super(committer);
  }

  protected rowTx(tx: PgTx, k: ResourceKey): ResourceRecord | undefined {
    const [r] = tx.conn.query(`${BY_KEY} FOR UPDATE`, [k.tenant, k.kind, k.name]);
    return r ? rows.from(r) : undefined;
  }

  protected override changedTx(tx: PgTx): void {
    super.changedTx(tx);
    if (tx.once(RESOURCES_CHANNEL)) tx.conn.defer("SELECT pg_notify($1, $2)", [RESOURCES_CHANNEL, this.db.node]);
  }

  protected upsertTx(tx: PgTx, record: ResourceRecord): void {
    const put = rows.insert(
      record,
      "ON CONFLICT (tenant, kind, name) DO UPDATE SET spec = excluded.spec, " +
        "resource_version = excluded.resource_version, updated_at = excluded.updated_at",
    );
    tx.conn.defer(put.text, put.params);
  }

  protected historyTx(tx: PgTx, k: ResourceKey, c: ResourceChange): void {
    tx.conn.defer(
      "INSERT INTO resource_history (tenant, kind, name, resource_version, op, spec, actor, changed_at) " +
        "VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)",
      [k.tenant, k.kind, k.name, c.resourceVersion, c.op, JSON.stringify(c.spec), c.actor, c.changedAt],
    );
  }

  protected lastVersionTx(tx: PgTx, k: ResourceKey): number {
    const [r] = tx.conn.query(
      "SELECT max(resource_version) AS v FROM resource_history WHERE tenant = $1 AND kind = $2 AND name = $3",
      [k.tenant, k.kind, k.name],
    );
    return r?.v == null ? 0 : num(r.v);
  }

  protected deleteRowTx(tx: PgTx, k: ResourceKey): void {
    tx.conn.defer("DELETE FROM resources WHERE tenant = $1 AND kind = $2 AND name = $3", [k.tenant, k.kind, k.name]);
  }

  protected countInTenantTx(tx: PgTx, name: string): number {
    return num(
      tx.conn.query("SELECT count(*) AS n FROM resources WHERE tenant = $1 AND kind <> 'tenants'", [name])[0]!.n,
    );
  }

  allTx(tx: PgTx): ResourceRecord[] {
    return tx.conn.query("SELECT * FROM resources").map(rows.from);
  }

  async get(k: ResourceKey): Promise<ResourceRecord | null> {
    const [r] = await this.db.read(BY_KEY, [k.tenant, k.kind, k.name]);
    return r ? rows.from(r) : null;
  }

  async list(q: Parameters<ResourceStore["list"]>[0]): Promise<ResourceRecord[]> {
    const params: unknown[] = [q.kind];
    const where = ["kind = $1"];
    if (q.tenant !== undefined) where.push(`tenant = $${params.push(q.tenant)}`);
    if (q.tenants) where.push(`tenant = ANY($${params.push([...q.tenants])}::text[])`);
    if (q.after !== undefined) where.push(`name > $${params.push(q.after)}`);
    const found = await this.db.read(
      `SELECT * FROM resources WHERE ${where.join(" AND ")} ORDER BY name LIMIT $${params.push(q.limit)}`,
      params,
    );
    return found.map(rows.from);
  }

  async all(): Promise<ResourceRecord[]> {
    const found = await this.db.read("SELECT * FROM resources ORDER BY tenant, kind, name");
    return found.map(rows.from);
  }

  async history(
    k: ResourceKey,
  ): Promise<{ resourceVersion: number; op: string; spec: unknown; actor: string; changedAt: number }[]> {
    const found = await this.db.read(
      "SELECT * FROM resource_history WHERE tenant = $1 AND kind = $2 AND name = $3 ORDER BY resource_version",
      [k.tenant, k.kind, k.name],
    );
    return found.map((r) => ({
      tenant: r.tenant as string,
      kind: r.kind as string,
      name: r.name as string,
      resourceVersion: num(r.resource_version),
      op: r.op as string,
      spec: r.spec,
      actor: r.actor as string,
      changedAt: num(r.changed_at),
    }));
  }

  /** Move `generation` when another node's commit changed resources. */
  async listen(): Promise<{ unlisten(): Promise<void> }> {
    return this.db.pool.listen(RESOURCES_CHANNEL, (from) => {
      if (from !== this.db.node) this.bump();
    });
  }
}
