import type { Kind, TenantSpec } from "./resources/specs.ts";
import { KIND_NAMES } from "./resources/specs.ts";
import type { TenantState } from "./resources/validate.ts";
import type { ResourceKey, ResourceRecord, ResourceStore } from "../store/index.ts";

/** Group resource rows into one TenantState per tenant (tenants without a row are skipped). */
export function toStates(records: readonly ResourceRecord[]): TenantState[] {
  const states = new Map<string, TenantState>();
  for (const r of records) {
    if (r.kind !== "tenants") continue;
    const state = { tenant: r.spec as TenantSpec } as TenantState;
    for (const k of KIND_NAMES) (state as unknown as Record<Kind, unknown[]>)[k] = [];
    states.set(r.name, state);
  }
  for (const r of records) {
    if (r.kind === "tenants") continue;
    (states.get(r.tenant) as unknown as Record<Kind, unknown[]> | undefined)?.[r.kind as Kind]?.push(r.spec);
  }
  return [...states.values()];
}

/** The records as they would be after putting `spec` at `key` (or deleting it, with spec null). */
export function withChange(
  records: readonly ResourceRecord[],
  key: ResourceKey,
  spec: unknown | null,
): ResourceRecord[] {
  const same = (r: ResourceRecord) => r.tenant === key.tenant && r.kind === key.kind && r.name === key.name;
  const rest = records.filter((r) => !same(r));
  if (spec === null) return rest;
  return [...rest, { ...key, spec, resourceVersion: 0, createdAt: 0, updatedAt: 0 }];
}

/**
 * One tenant's whole configuration as a desired state (null when there is no such tenant), read
 * a page of 500 at a time in name order: what `GET /v1/config/export` and the console's download
 * render.
 */
export async function readTenantState(resources: ResourceStore, tenant: string): Promise<TenantState | null> {
  const own = await resources.get({ tenant, kind: "tenants", name: tenant });
  if (!own) return null;
  const state = { tenant: own.spec as TenantSpec } as TenantState;
  for (const kind of KIND_NAMES) {
    const specs: unknown[] = [];
    for (let after: string | undefined; ; ) {
      const rows = await resources.list({ tenant, kind, after, limit: 500 });
      specs.push(...rows.map((r) => r.spec));
      if (rows.length < 500) break;
      after = rows.at(-1)!.name;
    }
    (state as unknown as Record<Kind, unknown[]>)[kind] = specs;
  }
  return state;
}
