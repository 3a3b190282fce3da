import { AppError } from "../errors/index.ts";
import type { TemplateSpec } from "../control/resources/specs.ts";
import type { ResourceStore } from "../store/index.ts";

/** A template as a claim uses it: where it is declared, its spec and version, and the name a runtime's row keeps. */
export interface ResolvedTemplate {
  /** The tenant that declares it (the claiming tenant, or the owner of a shared one). */
  owner: string;
  name: string;
  /** What the runtime's row records: `name` for the tenant's own, `owner/name` for another tenant's shared one. */
  ref: string;
  spec: TemplateSpec;
  version: number;
}

/**
 * The template a tenant may claim under `ref`: its own `name`, or a `visibility: shared` one of
 * another tenant (`owner/name`, or just `name` when exactly one other tenant shares that name).
 */
export async function resolveTemplate(
  resources: Pick<ResourceStore, "get" | "list">,
  tenant: string,
  ref: string,
): Promise<ResolvedTemplate> {
  const slash = ref.indexOf("/");
  if (slash >= 0) {
    const owner = ref.slice(0, slash);
    const name = ref.slice(slash + 1);
    const rec = await resources.get({ tenant: owner, kind: "templates", name });
    const spec = rec?.spec as TemplateSpec | undefined;
    if (!rec || !spec || (owner !== tenant && spec.visibility !== "shared"))
      throw new AppError("not_found", `template ${ref} does not exist or is not shared`);
    return { owner, name, ref: owner === tenant ? name : ref, spec, version: rec.resourceVersion };
  }
  const own = await resources.get({ tenant, kind: "templates", name: ref });
  if (own) return { owner: tenant, name: ref, ref, spec: own.spec as TemplateSpec, version: own.resourceVersion };
  const shared = (await resources.list({ kind: "templates", limit: 100_000 })).filter(
    (r) => r.name === ref && r.tenant !== tenant && (r.spec as TemplateSpec).visibility === "shared",
  );
  if (shared.length === 0) throw new AppError("not_found", `template ${ref} does not exist in ${tenant} nor is shared`);
  if (shared.length > 1)
    throw new AppError(
      "conflict",
      `template ${ref} is shared by ${shared.map((r) => r.tenant).join(", ")}: name it as <tenant>/${ref}`,
    );
  const r = shared[0]!;
  return {
    owner: r.tenant,
    name: ref,
    ref: `${r.tenant}/${ref}`,
    spec: r.spec as TemplateSpec,
    version: r.resourceVersion,
  };
}

/** The template a claimed runtime's row names, resolved from the tenant that claimed it. */
export function resolveRecorded(
  resources: Pick<ResourceStore, "get" | "list">,
  tenant: string,
  ref: string,
): Promise<ResolvedTemplate> {
  return resolveTemplate(resources, tenant, ref.includes("/") ? ref : `${tenant}/${ref}`);
}

/**
 * Templates as claims read them, kept parsed in memory while the resources are unchanged (the
 * store's `generation` moves on every committed change, which drops them all).
 */
export class TemplateCache {
  private generation = -1;
  private readonly resolved = new Map<string, Promise<ResolvedTemplate>>();

  constructor(private readonly resources: Pick<ResourceStore, "get" | "list" | "generation">) {}

  /** `resolveTemplate`, from memory when nothing changed since. */
  resolve(tenant: string, ref: string): Promise<ResolvedTemplate> {
    if (this.resources.generation !== this.generation || this.resolved.size > 1000) {
      this.resolved.clear();
      this.generation = this.resources.generation;
    }
    const key = `${tenant}\n${ref}`;
    let hit = this.resolved.get(key);
    if (!hit) {
      hit = resolveTemplate(this.resources, tenant, ref);
      this.resolved.set(key, hit);
      // A template that does not resolve is read again next time.
      hit.catch(() => this.resolved.get(key) === hit && this.resolved.delete(key));
    }
    return hit;
  }

  /** `resolveRecorded`, from memory when nothing changed since. */
  recorded(tenant: string, ref: string): Promise<ResolvedTemplate> {
    return this.resolve(tenant, ref.includes("/") ? ref : `${tenant}/${ref}`);
  }
}
