import { AppError } from "../errors/index.ts";
import type { Committer, Precondition, ResourceKey, ResourceRecord, Tx, WriteMode } from "./contract.ts";

export const resourceLabel = (k: ResourceKey): string =>
  k.kind === "tenants" ? `tenant ${k.name}` : `${k.kind.replace(/s$/, "").replace(/ie$/, "y")} ${k.tenant}/${k.name}`;

/** A resource's history row. */
export interface ResourceChange {
  resourceVersion: number;
  op: "create" | "update" | "delete";
  spec: unknown;
  actor: string;
  changedAt: number;
}

/**
 * Control-plane resource writes, the same on every driver: the preconditions (If-Match,
 * If-None-Match, create/update), the version numbering and the history. Writes run inside a unit of
 * work, so a whole `apply` is one transaction and two writers racing on one If-Match take turns:
 * the second sees the first's new resource_version and gets 412. A driver supplies its statements
 * and the reads of ResourceStore.
 */
export abstract class ResourceWrites<T extends Tx> {
  private changes = 0;
  protected readonly bump = (): void => {
    this.changes++;
  };

  constructor(protected readonly committer: Committer<T>) {}

  /** Moves after every committed change: a reader that keeps resources in memory checks it. */
  get generation(): number {
    return this.changes;
  }

  /** The resource at `k`, held against other writers until the unit commits. */
  protected abstract rowTx(tx: T, k: ResourceKey): ResourceRecord | undefined;
  /** The highest resource_version `k` ever had (0 if none): a deleted resource's numbering continues. */
  protected abstract lastVersionTx(tx: T, k: ResourceKey): number;
  protected abstract upsertTx(tx: T, record: ResourceRecord): void;
  protected abstract deleteRowTx(tx: T, k: ResourceKey): void;
  protected abstract historyTx(tx: T, k: ResourceKey, change: ResourceChange): void;
  /** How many resources other than the tenant itself live in tenant `name`. */
  protected abstract countInTenantTx(tx: T, name: string): number;

  /** A committed change moves `generation`. */
  protected changedTx(tx: T): void {
    tx.afterCommit(this.bump);
  }

  private check(existing: ResourceRecord | undefined, k: ResourceKey, mode: WriteMode, pre: Precondition): void {
    const label = resourceLabel(k);
    if (mode === "create" && existing) throw new AppError("conflict", `${label} already exists`);
    if (pre.ifNoneMatch && existing)
      throw new AppError("precondition_failed", `${label} already exists (If-None-Match: *)`);
    if (pre.ifMatch === undefined) {
      if (mode === "update" && !existing) throw new AppError("not_found", `${label} not found`);
      return;
    }
    if (!existing) {
      // RFC 9110 §13.1.1: If-Match on a missing resource fails the precondition.
      throw pre.ifMatch === "*"
        ? new AppError("precondition_failed", `${label} does not exist (If-Match: *)`)
        : new AppError("not_found", `${label} not found`);
    }
    if (pre.ifMatch !== "*" && !pre.ifMatch.includes(existing.resourceVersion)) {
      throw new AppError(
        "precondition_failed",
        `${label} is at resource_version ${existing.resourceVersion}, not ${pre.ifMatch.join(" or ")}`,
      );
    }
  }

  putTx(
    tx: T,
    k: ResourceKey,
    spec: unknown,
    opts: { mode: WriteMode; pre?: Precondition; actor: string },
  ): { record: ResourceRecord; changed: boolean; created: boolean } {
    const existing = this.rowTx(tx, k);
    this.check(existing, k, opts.mode, opts.pre ?? {});
    if (existing && Bun.deepEquals(existing.spec, spec, true))
      return { record: existing, changed: false, created: false };
    // A re-created resource continues the numbering of the deleted one, so a stale ETag never matches it.
    const version = (existing?.resourceVersion ?? this.lastVersionTx(tx, k)) + 1;
    const record: ResourceRecord = {
      tenant: k.tenant,
      kind: k.kind,
      name: k.name,
      spec,
      resourceVersion: version,
      createdAt: existing?.createdAt ?? tx.now,
      updatedAt: tx.now,
    };
    this.upsertTx(tx, record);
    const op = existing ? ("update" as const) : ("create" as const);
    this.historyTx(tx, k, { resourceVersion: version, op, spec, actor: opts.actor, changedAt: tx.now });
    this.changedTx(tx);
    return { record, changed: true, created: !existing };
  }

  deleteTx(tx: T, k: ResourceKey, opts: { pre?: Precondition; actor: string }): ResourceRecord {
    const existing = this.rowTx(tx, k);
    if (!existing) throw new AppError("not_found", `${resourceLabel(k)} not found`);
    this.check(existing, k, "update", opts.pre ?? {});
    if (k.kind === "tenants") {
      const left = this.countInTenantTx(tx, k.name);
      if (left > 0)
        throw new AppError(
          "conflict",
          `tenant ${k.name} still has ${left} resources: delete them first (or apply with --prune)`,
        );
    }
    this.deleteRowTx(tx, k);
    const change: ResourceChange = {
      resourceVersion: existing.resourceVersion + 1,
      op: "delete",
      spec: existing.spec,
      actor: opts.actor,
      changedAt: tx.now,
    };
    this.historyTx(tx, k, change);
    this.changedTx(tx);
    return existing;
  }

  /** Run several writes as one transaction (apply). */
  transact<R>(work: (tx: T) => R): Promise<R> {
    return this.committer.run(work);
  }
}
