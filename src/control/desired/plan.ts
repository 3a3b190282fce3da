import { GLOBAL, type Kind } from "../resources/specs.ts";
import { fieldPath, type TenantState } from "../resources/validate.ts";
import type { DesiredState, Snapshot } from "./schema.ts";

export type Op = "create" | "update" | "unchanged" | "delete";

/** One field that differs; `from` is absent for a field being set, `to` for one being removed. */
export interface FieldChange {
  path: string;
  from?: unknown;
  to?: unknown;
}

export interface Change {
  op: Op;
  /** The tenant the resource belongs to; for a tenant, its own name; GLOBAL for a global policy. */
  tenant: string;
  kind: Kind | "tenants";
  name: string;
  /** For an update, every field that differs; empty otherwise. */
  fields: FieldChange[];
}

/**
 * The order changes are applied in. Tenants come first, then the resources of each tenant from
 * the receiving end back to the ingress: endpoints exist before the routes that deliver to them,
 * policies before the routes they guard, bindings (which admit traffic) last. Deletes run the
 * same list backwards, tenants last. Apply runs in one transaction, so the order matters for the
 * store's own checks and for a reader of the plan, not for what the appliance sees half-done.
 */
export const APPLY_ORDER: readonly Kind[] = ["endpoints", "templates", "policies", "routes", "bindings"];

/**
 * What applying `desired` to `current` would do. A declared resource is compared field by field:
 * the file is its whole truth, so a field set in the database and absent from the file is a
 * change. Resources the file does not declare are left alone and not listed, unless `prune`,
 * which deletes them (and tenants the file does not declare, with all their resources).
 */
export function plan(desired: DesiredState, current: Snapshot, opts: { prune: boolean }): Change[] {
  const have = byTenant(current);
  const want = byTenant(desired);
  const changes: Change[] = [];

  for (const t of want.values())
    changes.push(compare(t.tenant.name, "tenants", t.tenant.name, t.tenant, have.get(t.tenant.name)?.tenant));
  // Global policies: declared in the file's top-level `policies` (docs/desired-state.md#policies), owned by no tenant.
  const globals = byName(current.policies ?? []);
  for (const p of sortedByName(desired.policies ?? []))
    changes.push(compare(GLOBAL, "policies", p.name, p, globals.get(p.name)));
  for (const kind of APPLY_ORDER) {
    for (const t of want.values()) {
      const existing = byName(ofKind(have.get(t.tenant.name), kind));
      for (const r of sortedByName(ofKind(t, kind)))
        changes.push(compare(t.tenant.name, kind, r.name, r, existing.get(r.name)));
    }
  }
  if (!opts.prune) return changes;

  const remove = (tenant: string, kind: Kind | "tenants", name: string): Change => ({
    op: "delete",
    tenant,
    kind,
    name,
    fields: [],
  });
  for (const kind of [...APPLY_ORDER].reverse()) {
    for (const t of have.values()) {
      const declared = byName(ofKind(want.get(t.tenant.name), kind));
      for (const r of sortedByName(ofKind(t, kind)))
        if (!declared.has(r.name)) changes.push(remove(t.tenant.name, kind, r.name));
    }
  }
  for (const t of have.values())
    if (!want.has(t.tenant.name)) changes.push(remove(t.tenant.name, "tenants", t.tenant.name));
  const declaredGlobals = byName(desired.policies ?? []);
  for (const p of sortedByName(current.policies ?? []))
    if (!declaredGlobals.has(p.name)) changes.push(remove(GLOBAL, "policies", p.name));
  return changes;
}

function compare(
  tenant: string,
  kind: Kind | "tenants",
  name: string,
  desired: object,
  current: object | undefined,
): Change {
  if (current === undefined) return { op: "create", tenant, kind, name, fields: [] };
  const fields = diffFields(current, desired);
  return { op: fields.length ? "update" : "unchanged", tenant, kind, name, fields };
}

/**
 * Every field that differs between two specs, each at the deepest path that differs. Key order never
 * matters; list order does (a route's `to` is delivered in order). Lists of objects of the same
 * length are compared item by item, so one changed policy rule is one line, not the whole list.
 */
export function diffFields(from: unknown, to: unknown, path: (string | number)[] = []): FieldChange[] {
  if (same(from, to)) return [];
  if (isObject(from) && isObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    return keys.flatMap((k) => diffFields(from[k], to[k], [...path, k]));
  }
  if (Array.isArray(from) && Array.isArray(to) && from.length === to.length && [...from, ...to].some(isObject)) {
    return from.flatMap((item, i) => diffFields(item, to[i], [...path, i]));
  }
  const change: FieldChange = { path: fieldPath(path) };
  if (from !== undefined) change.from = from;
  if (to !== undefined) change.to = to;
  return [change];
}

/** Deep equality that ignores key order and treats an undefined field as an absent one. */
function same(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => same(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].every((k) => same(a[k], b[k]));
  }
  return a === b;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Tenants by name, in name order: a plan reads the same whatever order the file or database used. */
function byTenant(state: DesiredState): Map<string, TenantState> {
  const tenants = [...state.tenants].sort((a, b) => byCodePoint(a.tenant.name, b.tenant.name));
  return new Map(tenants.map((t) => [t.tenant.name, t]));
}

/** A tenant's resources of one kind; plan() needs only their names and their specs as data. */
function ofKind(t: TenantState | undefined, kind: Kind): { name: string }[] {
  return t ? t[kind] : [];
}

function byName<T extends { name: string }>(list: T[]): Map<string, T> {
  return new Map(list.map((r) => [r.name, r]));
}

function sortedByName<T extends { name: string }>(list: T[]): T[] {
  return [...list].sort((a, b) => byCodePoint(a.name, b.name));
}

/** Names are ASCII; code-point order is the same on every machine, unlike localeCompare. */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
