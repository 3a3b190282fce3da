import { AppError, type FieldError } from "../errors/index.ts";
import { GLOBAL, type Kind, type PolicySpec, SINGULAR } from "./resources/specs.ts";
import { checkGlobal, checkGlobalPolicies, checkTenant, validateSpec } from "./resources/validate.ts";
import type { Precondition, ResourceKey, ResourceRecord, WriteMode } from "../store/index.ts";
import type { AuditLog, ResourceStore, Tx } from "../store/index.ts";
import { toStates, withChange } from "./state.ts";

/** Fields the API adds to a resource's representation; a client may send them back on PUT. */
export const METADATA_FIELDS = ["tenant", "global", "resource_version", "created_at", "updated_at"] as const;

/** On the outbox when an endpoint's URL changed: the dispatcher resets its circuit and sends what waits at once. */
export const ENDPOINT_URL_CHANGED = "endpoint.url_changed";

/** In the unit of work that changes `key` from `previous` to `spec`: announce what the running appliance must react to. */
export function announceChangeTx(tx: Tx, key: ResourceKey, previous: unknown, spec: unknown): void {
  const url = (s: unknown) => (s as { url?: unknown } | null | undefined)?.url;
  if (key.kind === "endpoints" && previous && url(previous) !== url(spec)) {
    tx.emit({ topic: ENDPOINT_URL_CHANGED, tenant: key.tenant, payload: { name: key.name } });
  }
}

export type ResourceKind = Kind | "tenants";

function problemKey(p: { tenant?: string; kind: string; name: string; pointer: string; message: string }): string {
  return `${p.tenant ?? ""}\u0000${p.kind}\u0000${p.name}\u0000${p.pointer}\u0000${p.message}`;
}

/** A reference problem, with the tenant whose resource it is about (null: a global policy). */
export interface ReferenceProblem extends FieldError {
  tenant: string | null;
  /** Set when the problem is a value another tenant holds: who, for the audit log only. */
  clash?: Clash;
}

/** A value (a Telnyx number) claimed by two tenants, from the side of `tenant`. */
export interface Clash {
  tenant: string;
  target: string;
  value: string;
  otherTenant: string;
  otherTarget: string;
}

/** Cross-reference problems of a whole configuration, as field errors naming the resource. */
export function referenceProblems(records: readonly ResourceRecord[]): Map<string, ReferenceProblem> {
  const states = toStates(records);
  const out = new Map<string, ReferenceProblem>();
  for (const state of states) {
    const tenant = state.tenant.name;
    for (const p of checkTenant(state))
      out.set(problemKey({ ...p, tenant }), {
        tenant,
        field: `${tenant}/${p.kind}/${p.name}${p.pointer}`,
        message: p.message,
      });
  }
  for (const p of checkGlobal(states)) {
    if (!p.other) {
      out.set(problemKey(p), {
        tenant: p.tenant,
        field: `${p.tenant}/${p.kind}/${p.name}${p.pointer}`,
        message: p.message,
      });
      continue;
    }
    // guarantee 5 (docs/guarantees.md): a value two tenants claim is refused on both sides, and each side learns only
    // that another tenant holds it; which one is for the audit log (see refusal()).
    const message = `number ${p.other.value} is already in use by another tenant; a number can route to one tenant only`;
    const sides = [
      { tenant: p.tenant, name: p.name, pointer: p.pointer },
      { tenant: p.other.tenant, name: p.other.binding, pointer: p.other.pointer },
    ];
    sides.forEach((side, i) => {
      const other = sides[1 - i]!;
      out.set(problemKey({ tenant: side.tenant, kind: "bindings", name: side.name, pointer: side.pointer, message }), {
        tenant: side.tenant,
        field: `${side.tenant}/bindings/${side.name}${side.pointer}`,
        message,
        clash: {
          tenant: side.tenant,
          target: `${side.tenant}/bindings/${side.name}`,
          value: p.other!.value,
          otherTenant: other.tenant,
          otherTarget: `${other.tenant}/bindings/${other.name}`,
        },
      });
    });
  }
  const globals = records.filter((r) => r.tenant === GLOBAL && r.kind === "policies").map((r) => r.spec as PolicySpec);
  for (const p of checkGlobalPolicies(globals))
    out.set(problemKey({ ...p, tenant: GLOBAL }), {
      tenant: null,
      field: `policies/${p.name}${p.pointer}`,
      message: p.message,
    });
  return out;
}

/** Problems in `after` that `before` did not have: a change is refused only for what it breaks. */
export function newProblems(before: readonly ResourceRecord[], after: readonly ResourceRecord[]): ReferenceProblem[] {
  const old = referenceProblems(before);
  return [...referenceProblems(after)].filter(([k]) => !old.has(k)).map(([, v]) => v);
}

/**
 * The 422 for a change that breaks references, told to whoever made the change about the tenants
 * it changed (`acting`) only: a problem that shows on another tenant's side (the other claimant
 * of a number) is left out, so no answer names another tenant's resources. The clashes of the
 * acting tenants are added to `clashes`, for the caller to audit once the transaction is undone.
 */
export function refusal(
  problems: readonly ReferenceProblem[],
  acting: readonly (string | null)[],
  detail: string,
  clashes: Clash[],
): AppError {
  const visible = problems.filter((p) => acting.includes(p.tenant));
  clashes.push(...visible.flatMap((p) => (p.clash ? [p.clash] : [])));
  const errors = visible.map(({ field, message }) => ({ field, message }));
  return new AppError("invalid_input", detail, {
    errors: errors.length ? errors : [{ field: "/", message: "conflicts with the configuration of another tenant" }],
  });
}

/**
 * Every refusal over a value another tenant holds goes to the audit log, with both sides named
 * (guarantee 5 (docs/guarantees.md)). The entries belong to no tenant, so only an admin reads them.
 */
export async function auditClashes(
  audit: AuditLog,
  clashes: readonly Clash[],
  actor: string,
  request: string,
): Promise<void> {
  for (const c of clashes) {
    await audit.append({
      actor,
      tenant: null,
      action: "resource.conflict",
      decision: "deny",
      target: c.target,
      details: {
        request,
        value: c.value,
        tenant: c.tenant,
        other_tenant: c.otherTenant,
        other_resource: c.otherTarget,
      },
    });
  }
}

/** Schema validation of one resource body: every field at fault, or a 422. */
export function validated(kind: ResourceKind, body: unknown): Record<string, unknown> {
  const problems = validateSpec(kind, body);
  if (problems.length) {
    throw new AppError("invalid_input", `the ${SINGULAR[kind]} is not valid`, {
      errors: problems.map((p) => ({ field: p.pointer || "/", message: p.message })),
    });
  }
  return body as Record<string, unknown>;
}

/**
 * The control plane's write path, shared by /v1, `apply` and (later) the console: schema
 * validation outside the transaction, reference checks and the write inside it.
 */
export class ControlPlane {
  constructor(
    private readonly resources: ResourceStore,
    private readonly audit: AuditLog,
  ) {}

  async put(
    key: ResourceKey,
    spec: Record<string, unknown>,
    opts: { mode: WriteMode; pre?: Precondition; actor: string },
  ) {
    const kind = key.kind as ResourceKind;
    validated(kind, spec);
    const clashes: Clash[] = [];
    try {
      return await this.resources.transact((tx) => this.putTx(tx, key, spec, opts, clashes));
    } catch (e) {
      // Audited after the rollback: an entry written inside the refused transaction would go with it.
      if (clashes.length) await auditClashes(this.audit, clashes, opts.actor, "api");
      throw e;
    }
  }

  putTx(
    tx: Tx,
    key: ResourceKey,
    spec: unknown,
    opts: { mode: WriteMode; pre?: Precondition; actor: string },
    clashes: Clash[] = [],
  ) {
    const before = this.resources.allTx(tx);
    const owner =
      key.tenant === GLOBAL
        ? key.kind === "policies"
        : key.kind === "tenants" || before.some((r) => r.kind === "tenants" && r.name === key.tenant);
    if (!owner) {
      throw new AppError("not_found", "not found");
    }
    const problems = newProblems(before, withChange(before, key, spec));
    if (problems.length)
      throw refusal(
        problems,
        [ownerTenant(key)],
        `the ${SINGULAR[key.kind as ResourceKind]} refers to something that is not there, or to something another resource holds`,
        clashes,
      );
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
      const errors =
        key.kind === "tenants"
          ? []
          : newProblems(before, withChange(before, key, null)).map(({ field, message }) => ({ field, message }));
      if (errors.length) {
        throw new AppError(
          "conflict",
          `other resources still refer to ${SINGULAR[key.kind as ResourceKind]} ${key.name}: ${errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`,
          { errors },
        );
      }
      const deleted = this.resources.deleteTx(tx, key, opts);
      this.audit.appendTx(tx, {
        actor: opts.actor,
        tenant: ownerTenant(key),
        action: "resource.delete",
        target: resourcePath(key),
        details: { resource_version: deleted.resourceVersion },
      });
      return deleted;
    });
  }
}

/** The tenant an audit entry is about: none for a global policy. */
const ownerTenant = (key: ResourceKey): string | null => (key.tenant === GLOBAL ? null : key.tenant);

/** `beta/routes/hello`, or `policies/guard` for a global policy. */
export const resourcePath = (key: ResourceKey): string =>
  key.tenant === GLOBAL ? `${key.kind}/${key.name}` : `${key.tenant}/${key.kind}/${key.name}`;

/** RFC 7396 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === "object" && !Array.isArray(target) ? { ...(target as object) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
