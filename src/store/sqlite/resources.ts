import { and, asc, eq, gt, inArray, ne, sql } from "drizzle-orm";
import type { ResourceKey, ResourceRecord, ResourceStore } from "../contract.ts";
import { type ResourceChange, ResourceWrites } from "../resource-writes.ts";
import { resourceHistory, resources } from "../schema/index.ts";
import type { Db } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";

type Row = typeof resources.$inferSelect;
const toRecord = (r: Row): ResourceRecord => ({
  tenant: r.tenant,
  kind: r.kind,
  name: r.name,
  spec: r.spec,
  resourceVersion: r.resourceVersion,
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
});

/** Control-plane resources on SQLite (the writes' rules: ../resource-writes.ts). */
export class SqliteResources extends ResourceWrites<SqliteTx> implements ResourceStore {
  /** Prepared once: ingress looks up a binding on every request. One connection, so it also reads inside a transaction. */
  private readonly byKey;

  constructor(
    private readonly db: Db,
    committer: SqliteCommitter,
  ) {
    super(committer);
    this.byKey = db
      .select()
      .from(resources)
      .where(
        and(
          eq(resources.tenant, sql.placeholder("tenant")),
          eq(resources.kind, sql.placeholder("kind")),
          eq(resources.name, sql.placeholder("name")),
        ),
      )
      .prepare();
  }

  private row(k: ResourceKey): Row | undefined {
    return this.byKey.get({ tenant: k.tenant, kind: k.kind, name: k.name });
  }

  protected rowTx(_tx: SqliteTx, k: ResourceKey): ResourceRecord | undefined {
    const r = this.row(k);
    return r ? toRecord(r) : undefined;
  }

  protected lastVersionTx(tx: SqliteTx, k: ResourceKey): number {
    return (
      tx.db
        .select({ v: sql<number | null>`max(${resourceHistory.resourceVersion})` })
        .from(resourceHistory)
        .where(
          and(eq(resourceHistory.tenant, k.tenant), eq(resourceHistory.kind, k.kind), eq(resourceHistory.name, k.name)),
        )
        .get()?.v ?? 0
    );
  }

  protected upsertTx(tx: SqliteTx, row: ResourceRecord): void {
    tx.db
      .insert(resources)
      .values(row)
      .onConflictDoUpdate({
        target: [resources.tenant, resources.kind, resources.name],
        set: { spec: row.spec, resourceVersion: row.resourceVersion, updatedAt: row.updatedAt },
      })
      .run();
  }

  protected deleteRowTx(tx: SqliteTx, k: ResourceKey): void {
    tx.db
      .delete(resources)
      .where(and(eq(resources.tenant, k.tenant), eq(resources.kind, k.kind), eq(resources.name, k.name)))
      .run();
  }

  protected historyTx(tx: SqliteTx, k: ResourceKey, change: ResourceChange): void {
    tx.db
      .insert(resourceHistory)
      .values({ tenant: k.tenant, kind: k.kind, name: k.name, ...change })
      .run();
  }

  protected countInTenantTx(tx: SqliteTx, name: string): number {
    return tx.db
      .select({ n: sql<number>`count(*)` })
      .from(resources)
      .where(and(eq(resources.tenant, name), ne(resources.kind, "tenants")))
      .get()!.n;
  }

  /** Every resource, read inside a unit of work (the control plane validates whole states). */
  allTx(tx: SqliteTx): ResourceRecord[] {
    return tx.db.select().from(resources).all().map(toRecord);
  }

  async get(k: ResourceKey): Promise<ResourceRecord | null> {
    const r = this.row(k);
    return r ? toRecord(r) : null;
  }

  async list(q: Parameters<ResourceStore["list"]>[0]): Promise<ResourceRecord[]> {
    const where = and(
      eq(resources.kind, q.kind),
      q.tenant !== undefined ? eq(resources.tenant, q.tenant) : undefined,
      q.tenants ? inArray(resources.tenant, [...q.tenants]) : undefined,
      q.after !== undefined ? gt(resources.name, q.after) : undefined,
    );
    return this.db
      .select()
      .from(resources)
      .where(where)
      .orderBy(asc(resources.name))
      .limit(q.limit)
      .all()
      .map(toRecord);
  }

  async all(): Promise<ResourceRecord[]> {
    return this.db
      .select()
      .from(resources)
      .orderBy(asc(resources.tenant), asc(resources.kind), asc(resources.name))
      .all()
      .map(toRecord);
  }

  async history(
    k: ResourceKey,
  ): Promise<{ resourceVersion: number; op: string; spec: unknown; actor: string; changedAt: number }[]> {
    return this.db
      .select()
      .from(resourceHistory)
      .where(
        and(eq(resourceHistory.tenant, k.tenant), eq(resourceHistory.kind, k.kind), eq(resourceHistory.name, k.name)),
      )
      .orderBy(asc(resourceHistory.resourceVersion))
      .all();
  }
}
