import { GLOBAL, type PolicySpec } from "../control/resources/specs.ts";
import type { ResourceStore } from "../store/index.ts";
import { type CompiledPolicy, compilePolicy, type PolicyCache } from "./engine.ts";

/** A policy not yet applied, evaluated in place of the stored one of the same name and scope. */
export interface DraftPolicy {
  spec: PolicySpec;
  global: boolean;
}

/**
 * The policies that decide for a tenant's events, in the engine's order: the global ones first,
 * then the tenant's own, each by name. Stored versions come compiled from the cache; a draft is
 * compiled on its own as version 0 and never cached.
 */
export async function policiesFor(
  resources: ResourceStore,
  cache: PolicyCache,
  tenant: string,
  draft?: DraftPolicy,
): Promise<CompiledPolicy[]> {
  const out: CompiledPolicy[] = [];
  for (const owner of [GLOBAL, tenant]) {
    const isDraftScope = draft !== undefined && draft.global === (owner === GLOBAL);
    const rows = await resources.list({ tenant: owner, kind: "policies", limit: 100_000 });
    for (const r of rows) {
      if (isDraftScope && r.name === draft.spec.name) continue;
      out.push(cache.get(r.spec as PolicySpec, { tenant: owner, name: r.name, version: r.resourceVersion }));
    }
    if (isDraftScope) out.push(compilePolicy(draft.spec, { tenant: owner, name: draft.spec.name, version: 0 }));
  }
  return out;
}
