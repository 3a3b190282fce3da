import { AppError, type FieldError } from "../errors/index.ts";
import { GLOBAL, type Kind, type PolicySpec, SINGULAR } from "../resources/specs.ts";
import { checkGlobal, checkGlobalPolicies, checkTenant, validateSpec } from "../resources/validate.ts";
import type { Precondition, ResourceKey, ResourceRecord, WriteMode } from "../store/contract.ts";
import type { SqliteAudit, SqliteResources, SqliteTx } from "../store/index.ts";
import { toStates, withChange } from "./state.ts";

/** Fields the API adds to a resource's representation; a client may send them back on PUT. */
export const METADATA_FIELDS = ["tenant", "global", "resource_version", "created_at", "updated_at"] as const;

/** On the outbox when an endpoint's URL changed: the dispatcher resets its circuit and sends what waits at once. */
export const ENDPOINT_URL_CHANGED = "endpoint.url_changed";

/** In the unit of work that changes `key` from `previous` to `spec`: announce what the running appliance must react to. */
export function announceChangeTx(tx: SqliteTx, key: ResourceKey, previous: unknown, spec: unknown): void {
  const url = (s: unknown) => (s as { url?: unknown } | null | undefined)?.url;
  if (key.kind === "endpoints" && previous && url(previous) !== url(spec)) {
    tx.emit({ topic: ENDPOINT_URL_CHANGED, tenant: key.tenant, payload: { name: key.name } });
  }
}

export type ResourceKind = Kind | "tenants";

function problemKey(p: { tenant?: string; kind: string; name: string; pointer: string; message: string }): string {
  return `${p.tenant ?? ""}\u0000${p.kind}\u0000${p.name}\u0000${p.pointer}\u0000${p.message}`;
}

/** Cross-reference problems of a whole configuration, as field errors naming the resource. */
export function referenceProblems(records: readonly ResourceRecord[]): Map<string, FieldError> {
  const states = toStates(records);
  const out = new Map<string, FieldError>();
  for (const state of states) {
    for (const p of checkTenant(state)) {
      out.set(problemKey({ ...p, tenant: state.tenant.name }), { field: `${state.tenant.name}/${p.kind}/${p.name}${p.pointer}`, message: p.message });
    }
  }
  for (const p of checkGlobal(states)) out.set(problemKey(p), { field: `${p.tenant}/${p.kind}/${p.name}${p.pointer}`, message: p.message });
  const globals = records.filter((r) => r.tenant === GLOBAL && r.kind === "policies").map((r) => r.spec as PolicySpec);
  for (const p of checkGlobalPolicies(globals)) out.set(problemKey({ ...p, tenant: GLOBAL }), { field: `policies/${p.name}${p.pointer}`, message: p.message });
  return out;
}

/** Problems in `after` that `before` did not have: a change is refused only for what it breaks. */
export function newProblems(before: readonly ResourceRecord[], after: readonly ResourceRecord[]): FieldError[] {
  const old = referenceProblems(before);
  return [...referenceProblems(after)].filter(([k]) => !old.has(k)).map(([, v]) => v);
}

/** Schema validation of one resource body: every field at fault, or a 422. */
export function validated(kind: ResourceKind, body: unknown): Record<string, unknown> {
  const problems = validateSpec(kind, body);
  if (problems.length) {
    throw new AppError("invalid_input", `the ${SINGULAR[kind]} is not valid`, { errors: problems.map((p) => ({ field: p.pointer || "/", message: p.message })) });
  }
  return body as Record<string, unknown>;
}

/**
 * The control plane's write path, shared by /v1, `apply` and (later) the console: schema
 * validation outside the transaction, reference checks and the write inside it.
 */
export class ControlPlane {
  constructor(
    private readonly resources: SqliteResources,
    private readonly audit: SqliteAudit,
  ) {}

  put(key: ResourceKey, spec: Record<string, unknown>, opts: { mode: WriteMode; pre?: Precondition; actor: string }) {
    const kind = key.kind as ResourceKind;
    validated(kind, spec);
    return this.resources.transact((tx) => this.putTx(tx, key, spec, opts));
  }

  putTx(tx: SqliteTx, key: ResourceKey, spec: unknown, opts: { mode: WriteMode; pre?: Precondition; actor: string }) {
    const before = this.resources.allTx(tx);
    const owner = key.tenant === GLOBAL ? key.kind === "policies" : key.kind === "tenants" || before.some((r) => r.kind === "tenants" && r.name === key.tenant);
    if (!owner) {
      throw new AppError("not_found", "not found");
    }
    const errors = newProblems(before, withChange(before, key, spec));
    if (errors.length) throw new AppError("invalid_input", `the ${SINGULAR[key.kind as ResourceKind]} refers to something that is not there`, { errors });
    const previous = before.find((r) => r.tenant === key.tenant && r.kind === key.kind && r.name === key.name)?.spec;
    const result = this.resources.putTx(tx, key, spec, opts);
    if (result.changed) {
      announceChangeTx(tx, key, previous, spec);
      // Same unit of work: the change and its audit entry commit together or not at all.
      this.audit.appendTx(tx, {
        actor: opts.actor,
        tenant: ownerTenant(key),
        action: result.created ? "resource.create" : "resource.update",
        target: resourcePath(key),
        details: { resource_version: result.record.resourceVersion },
      });
    }
    return result;
  }

  delete(key: ResourceKey, opts: { pre?: Precondition; actor: string }): Promise<ResourceRecord> {
    return this.resources.transact((tx) => {
      const before = this.resources.allTx(tx);
      const errors = key.kind === "tenants" ? [] : newProblems(before, withChange(before, key, null));
      if (errors.length) {
        throw new AppError("conflict", `other resources still refer to ${SINGULAR[key.kind as ResourceKind]} ${key.name}: ${errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`, { errors });
      }
      const deleted = this.resources.deleteTx(tx, key, opts);
      this.audit.appendTx(tx, { actor: opts.actor, tenant: ownerTenant(key), action: "resource.delete", target: resourcePath(key), details: { resource_version: deleted.resourceVersion } });
      return deleted;
    });
  }
}

/** The tenant an audit entry is about: none for a global policy. */
const ownerTenant = (key: ResourceKey): string | null => (key.tenant === GLOBAL ? null : key.tenant);

/** `beta/routes/hello`, or `policies/guard` for a global policy. */
export const resourcePath = (key: ResourceKey): string => (key.tenant === GLOBAL ? `${key.kind}/${key.name}` : `${key.tenant}/${key.kind}/${key.name}`);

/** RFC 7396 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === "object" && !Array.isArray(target) ? { ...(target as object) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
