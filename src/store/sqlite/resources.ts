import { and, asc, eq, gt, inArray, ne, sql } from "drizzle-orm";
import { AppError } from "../../errors/index.ts";
import type { Precondition, ResourceKey, ResourceRecord, ResourceStore, WriteMode } from "../contract.ts";
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

const label = (k: ResourceKey): string =>
  k.kind === "tenants" ? `tenant ${k.name}` : `${k.kind.replace(/s$/, "").replace(/ie$/, "y")} ${k.tenant}/${k.name}`;

/**
 * Control-plane resources on SQLite. Writes run inside a unit of work so that a whole `apply`
 * is one transaction, and so that two writers racing on the same If-Match are serialized by the
 * committer: the second sees the first's new resource_version and gets 412.
 */
export class SqliteResources implements ResourceStore {
  /** Prepared once: ingress looks up a binding on every request. One connection, so it also reads inside a transaction. */
  private readonly byKey;
  private changes = 0;
  private readonly bump = (): void => {
    this.changes++;
  };

  /** Moves after every committed change: a reader that keeps resources in memory checks it. */
  get generation(): number {
    return this.changes;
  }

  constructor(
    private readonly db: Db,
    private readonly committer: SqliteCommitter,
  ) {
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

  private row(_db: Db, k: ResourceKey): Row | undefined {
    return this.byKey.get({ tenant: k.tenant, kind: k.kind, name: k.name });
  }

  private check(existing: Row | undefined, k: ResourceKey, mode: WriteMode, pre: Precondition): void {
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

  putTx(
    tx: SqliteTx,
    k: ResourceKey,
    spec: unknown,
    opts: { mode: WriteMode; pre?: Precondition; actor: string },
  ): { record: ResourceRecord; changed: boolean; created: boolean } {
    const existing = this.row(tx.db, k);
    this.check(existing, k, opts.mode, opts.pre ?? {});
    if (existing && Bun.deepEquals(existing.spec, spec, true))
      return { record: toRecord(existing), changed: false, created: false };
    // A re-created resource continues the numbering of the deleted one, so a stale ETag never matches it.
    const version = (existing?.resourceVersion ?? this.lastVersion(tx.db, k)) + 1;
    const row: Row = {
      tenant: k.tenant,
      kind: k.kind,
      name: k.name,
      spec,
      resourceVersion: version,
      createdAt: existing?.createdAt ?? tx.now,
      updatedAt: tx.now,
    };
    tx.db
      .insert(resources)
      .values(row)
      .onConflictDoUpdate({
        target: [resources.tenant, resources.kind, resources.name],
        set: { spec, resourceVersion: version, updatedAt: tx.now },
      })
      .run();
    tx.db
      .insert(resourceHistory)
      .values({
        ...k,
        resourceVersion: version,
        op: existing ? "update" : "create",
        spec,
        actor: opts.actor,
        changedAt: tx.now,
      })
      .run();
    tx.afterCommit(this.bump);
    return { record: toRecord(row), changed: true, created: !existing };
  }

  private lastVersion(db: Db, k: ResourceKey): number {
    return (
      db
        .select({ v: sql<number | null>`max(${resourceHistory.resourceVersion})` })
        .from(resourceHistory)
        .where(
          and(eq(resourceHistory.tenant, k.tenant), eq(resourceHistory.kind, k.kind), eq(resourceHistory.name, k.name)),
        )
        .get()?.v ?? 0
    );
  }

  deleteTx(tx: SqliteTx, k: ResourceKey, opts: { pre?: Precondition; actor: string }): ResourceRecord {
    const existing = this.row(tx.db, k);
    if (!existing) throw new AppError("not_found", `${label(k)} not found`);
    this.check(existing, k, "update", opts.pre ?? {});
    if (k.kind === "tenants") {
      const left = tx.db
        .select({ n: sql<number>`count(*)` })
        .from(resources)
        .where(and(eq(resources.tenant, k.name), ne(resources.kind, "tenants")))
        .get()!.n;
      if (left > 0)
        throw new AppError(
          "conflict",
          `tenant ${k.name} still has ${left} resources: delete them first (or apply with --prune)`,
        );
    }
    tx.db
      .delete(resources)
      .where(and(eq(resources.tenant, k.tenant), eq(resources.kind, k.kind), eq(resources.name, k.name)))
      .run();
    tx.db
      .insert(resourceHistory)
      .values({
        ...k,
        resourceVersion: existing.resourceVersion + 1,
        op: "delete",
        spec: existing.spec,
        actor: opts.actor,
        changedAt: tx.now,
      })
      .run();
    tx.afterCommit(this.bump);
    return toRecord(existing);
  }

  /** Every resource, read inside a unit of work (the control plane validates whole states). */
  allTx(tx: SqliteTx): ResourceRecord[] {
    return tx.db.select().from(resources).all().map(toRecord);
  }

  async get(k: ResourceKey): Promise<ResourceRecord | null> {
    const r = this.row(this.db, k);
    return r ? toRecord(r) : null;
  }

  async list(q: {
    tenant?: string;
    tenants?: readonly string[];
    kind: string;
    after?: string;
    limit: number;
  }): Promise<ResourceRecord[]> {
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

  /** Run several writes as one transaction (apply). */
  transact<T>(work: (tx: SqliteTx) => T): Promise<T> {
    return this.committer.run(work);
  }
}
