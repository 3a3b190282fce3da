import { AppError } from "../../errors/index.ts";
import type { Precondition, ResourceKey, ResourceRecord, ResourceStore, WriteMode } from "../contract.ts";
import type { PgCommitter, PgTx } from "./committer.ts";
import { num, type PgDb } from "./db.ts";
import { Rows } from "./rows.ts";
import { resources } from "./schema/index.ts";

const rows = new Rows<ResourceRecord>(resources);
/** The channel a commit that changed resources notifies, so every node's `generation` moves. */
export const RESOURCES_CHANNEL = "agentowl_resources";

const label = (k: ResourceKey): string =>
  k.kind === "tenants" ? `tenant ${k.name}` : `${k.kind.replace(/s$/, "").replace(/ie$/, "y")} ${k.tenant}/${k.name}`;

const BY_KEY = "SELECT * FROM resources WHERE tenant = $1 AND kind = $2 AND name = $3";

/**
 * Control-plane resources on PostgreSQL (src/store/sqlite/resources.ts is the model): writes run
 * inside a unit of work, so a whole `apply` is one transaction. Two nodes racing on the same
 * If-Match are serialized by the row: the put reads it FOR UPDATE, so the second waits for the
 * first's commit and then sees its resource_version (412). A commit that changed resources
 * notifies the other nodes, whose `generation` moves when they hear it.
 */
export class PgResources implements ResourceStore {
  private changes = 0;
  private readonly bump = (): void => {
    this.changes++;
  };

  get generation(): number {
    return this.changes;
  }

  constructor(
    private readonly db: PgDb,
    private readonly committer: PgCommitter,
  ) {}

  private row(tx: PgTx, k: ResourceKey): ResourceRecord | undefined {
    const [r] = tx.conn.query(`${BY_KEY} FOR UPDATE`, [k.tenant, k.kind, k.name]);
    return r ? rows.from(r) : undefined;
  }

  private check(existing: ResourceRecord | undefined, k: ResourceKey, mode: WriteMode, pre: Precondition): void {
    if (mode === "create" && existing) throw new AppError("conflict", `${label(k)} already exists`);
    if (pre.ifNoneMatch && existing)
      throw new AppError("precondition_failed", `${label(k)} already exists (If-None-Match: *)`);
    if (pre.ifMatch === undefined) {
      if (mode === "update" && !existing) throw new AppError("not_found", `${label(k)} not found`);
      return;
    }
    if (!existing) {
      // RFC 9110 §13.1.1: If-Match on a missing resource fails the precondition.
      throw pre.ifMatch === "*"
        ? new AppError("precondition_failed", `${label(k)} does not exist (If-Match: *)`)
        : new AppError("not_found", `${label(k)} not found`);
    }
    if (pre.ifMatch !== "*" && !pre.ifMatch.includes(existing.resourceVersion)) {
      throw new AppError(
        "precondition_failed",
        `${label(k)} is at resource_version ${existing.resourceVersion}, not ${pre.ifMatch.join(" or ")}`,
      );
    }
  }

  private changed(tx: PgTx): void {
    tx.afterCommit(this.bump);
    if (tx.once(RESOURCES_CHANNEL)) tx.conn.defer("SELECT pg_notify($1, $2)", [RESOURCES_CHANNEL, this.db.node]);
  }

  putTx(
    tx: PgTx,
    k: ResourceKey,
    spec: unknown,
    opts: { mode: WriteMode; pre?: Precondition; actor: string },
  ): { record: ResourceRecord; changed: boolean; created: boolean } {
    const existing = this.row(tx, k);
    this.check(existing, k, opts.mode, opts.pre ?? {});
    if (existing && Bun.deepEquals(existing.spec, spec, true))
      return { record: existing, changed: false, created: false };
    // A re-created resource continues the numbering of the deleted one, so a stale ETag never matches it.
    const version = (existing?.resourceVersion ?? this.lastVersion(tx, k)) + 1;
    const record: ResourceRecord = {
      tenant: k.tenant,
      kind: k.kind,
      name: k.name,
      spec,
      resourceVersion: version,
      createdAt: existing?.createdAt ?? tx.now,
      updatedAt: tx.now,
    };
    const put = rows.insert(
      record,
      "ON CONFLICT (tenant, kind, name) DO UPDATE SET spec = excluded.spec, " +
        "resource_version = excluded.resource_version, updated_at = excluded.updated_at",
    );
    tx.conn.defer(put.text, put.params);
    this.writeHistory(tx, k, version, existing ? "update" : "create", spec, opts.actor);
    this.changed(tx);
    return { record, changed: true, created: !existing };
  }

  private writeHistory(tx: PgTx, k: ResourceKey, version: number, op: string, spec: unknown, actor: string): void {
    tx.conn.defer(
      "INSERT INTO resource_history (tenant, kind, name, resource_version, op, spec, actor, changed_at) " +
        "VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)",
      [k.tenant, k.kind, k.name, version, op, JSON.stringify(spec), actor, tx.now],
    );
  }

  private lastVersion(tx: PgTx, k: ResourceKey): number {
    const [r] = tx.conn.query(
      "SELECT max(resource_version) AS v FROM resource_history WHERE tenant = $1 AND kind = $2 AND name = $3",
      [k.tenant, k.kind, k.name],
    );
    return r?.v == null ? 0 : num(r.v);
  }

  deleteTx(tx: PgTx, k: ResourceKey, opts: { pre?: Precondition; actor: string }): ResourceRecord {
    const existing = this.row(tx, k);
    if (!existing) throw new AppError("not_found", `${label(k)} not found`);
    this.check(existing, k, "update", opts.pre ?? {});
    if (k.kind === "tenants") {
      const left = num(
        tx.conn.query("SELECT count(*) AS n FROM resources WHERE tenant = $1 AND kind <> 'tenants'", [k.name])[0]!.n,
      );
      if (left > 0)
        throw new AppError(
          "conflict",
          `tenant ${k.name} still has ${left} resources: delete them first (or apply with --prune)`,
        );
    }
    tx.conn.defer("DELETE FROM resources WHERE tenant = $1 AND kind = $2 AND name = $3", [k.tenant, k.kind, k.name]);
    this.writeHistory(tx, k, existing.resourceVersion + 1, "delete", existing.spec, opts.actor);
    this.changed(tx);
    return existing;
  }

  allTx(tx: PgTx): ResourceRecord[] {
    return tx.conn.query("SELECT * FROM resources").map(rows.from);
  }

  async get(k: ResourceKey): Promise<ResourceRecord | null> {
    const [r] = await this.db.read(BY_KEY, [k.tenant, k.kind, k.name]);
    return r ? rows.from(r) : null;
  }

  async list(q: {
    tenant?: string;
    tenants?: readonly string[];
    kind: string;
    after?: string;
    limit: number;
  }): Promise<ResourceRecord[]> {
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

  transact<T>(work: (tx: PgTx) => T): Promise<T> {
    return this.committer.run(work);
  }

  /** Move `generation` when another node's commit changed resources. */
  async listen(): Promise<{ unlisten(): Promise<void> }> {
    return this.db.pool.listen(RESOURCES_CHANNEL, (from) => {
      if (from !== this.db.node) this.bump();
    });
  }
}
