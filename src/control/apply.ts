import { type Change, type DesiredState, plan, summarize, type Summary } from "./desired/index.ts";
import { AppError } from "../errors/index.ts";
import type { ResourceKey, ResourceRecord } from "../store/index.ts";
import { GLOBAL, type PolicySpec } from "./resources/specs.ts";
import { vaultRefs } from "./resources/validate.ts";
import type { AuditLog, ResourceStore, Tx } from "../store/index.ts";
import { announceChangeTx, auditClashes, type Clash, newProblems, refusal, resourcePath } from "./service.ts";
import { toStates, withChange } from "./state.ts";

export interface ApplyResult {
  changes: Change[];
  summary: Summary;
  applied: boolean;
}

/** The spec a change puts in place: the declared resource from the file. */
function specOf(desired: DesiredState, c: Change): unknown {
  if (c.tenant === GLOBAL) {
    const spec = desired.policies?.find((p) => p.name === c.name);
    if (!spec) throw new Error(`plan names global policy ${c.name}, which the file does not declare`);
    return spec;
  }
  const tenant = desired.tenants.find((t) => t.tenant.name === c.tenant);
  if (!tenant) throw new Error(`plan names tenant ${c.tenant}, which the file does not declare`);
  if (c.kind === "tenants") return tenant.tenant;
  const spec = (tenant[c.kind] as { name: string }[]).find((r) => r.name === c.name);
  if (!spec) throw new Error(`plan names ${c.kind} ${c.tenant}/${c.name}, which the file does not declare`);
  return spec;
}

const keyOf = (c: Change): ResourceKey => ({ tenant: c.tenant, kind: c.kind, name: c.name });

/**
 * Desired state → database, in one transaction (docs/desired-state.md). `scope` limits what the plan may see
 * and so prune: a tenant token applies to its own tenants only. The resulting configuration is
 * checked as a whole before anything is written; a failure writes nothing.
 */
/** What apply needs of the vault: whether a referenced secret exists. */
export interface SecretIndex {
  existsTx(tx: Tx, scope: string): boolean;
  /** A secret's metadata (never its value), null when there is none. */
  describe(scope: string): Promise<{ format: "whsec" | "opaque" | null } | null>;
}

export async function applyDesired(
  resources: ResourceStore,
  audit: AuditLog,
  secrets: SecretIndex,
  desired: DesiredState,
  opts: { prune: boolean; dryRun: boolean; actor: string; scope: "all" | readonly string[]; request?: string },
): Promise<ApplyResult> {
  const clashes: Clash[] = [];
  try {
    return await applyTx(resources, audit, secrets, desired, opts, clashes);
  } catch (e) {
    // Audited after the rollback: an entry written inside the refused transaction would go with it.
    if (clashes.length)
      await auditClashes(audit, clashes, opts.actor, opts.request ?? (opts.dryRun ? "config.diff" : "config.apply"));
    throw e;
  }
}

function applyTx(
  resources: ResourceStore,
  audit: AuditLog,
  secrets: SecretIndex,
  desired: DesiredState,
  opts: { prune: boolean; dryRun: boolean; actor: string; scope: "all" | readonly string[] },
  clashes: Clash[],
): Promise<ApplyResult> {
  return resources.transact((tx) => {
    // Every vault: reference must name a secret that exists (docs/desired-state.md): one error naming them all.
    const missing = [...new Set(desired.tenants.flatMap(vaultRefs))].filter(
      (ref) => !secrets.existsTx(tx, ref.slice("vault:".length)),
    );
    if (missing.length) {
      throw new AppError(
        "invalid_input",
        `${missing.length} vault secret(s) do not exist: ${missing.join(", ")} (set them with 'agentowl vault set TENANT/NAME')`,
        {
          errors: missing.map((ref) => ({ field: ref, message: "no such secret in the vault" })),
        },
      );
    }
    const before = resources.allTx(tx);
    const visible =
      opts.scope === "all" ? before : before.filter((r) => (opts.scope as readonly string[]).includes(r.tenant));
    // Global policies are an admin's: out of a tenant token's plan, and so never pruned by one.
    const globals =
      opts.scope === "all"
        ? before.filter((r) => r.tenant === GLOBAL && r.kind === "policies").map((r) => r.spec as PolicySpec)
        : [];
    const changes = plan(desired, { tenants: toStates(visible), policies: globals }, { prune: opts.prune });
    let after: ResourceRecord[] = before;
    for (const c of changes) {
      if (c.op === "unchanged") continue;
      after = withChange(after, keyOf(c), c.op === "delete" ? null : specOf(desired, c));
    }
    // Told about the tenants (and global policies) the file declares, never another tenant's side.
    const problems = newProblems(before, after);
    const acting = [...desired.tenants.map((t) => t.tenant.name), null];
    if (problems.length)
      throw refusal(
        problems,
        acting,
        "applying this file would leave references that do not resolve, or claim what another resource holds",
        clashes,
      );
    const summary = summarize(changes);
    if (!opts.dryRun && summary.created + summary.updated + summary.deleted > 0) {
      audit.appendTx(tx, {
        actor: opts.actor,
        tenant: desired.tenants.length === 1 && !desired.policies?.length ? desired.tenants[0]!.tenant.name : null,
        action: "config.apply",
        details: {
          ...summary,
          prune: opts.prune,
          changes: changes.filter((c) => c.op !== "unchanged").map((c) => `${c.op} ${resourcePath(c)}`),
        },
      });
      for (const c of changes) {
        if (c.op === "create" || c.op === "update") {
          const key = keyOf(c);
          const spec = specOf(desired, c);
          resources.putTx(tx, key, spec, { mode: "upsert", actor: opts.actor });
          announceChangeTx(
            tx,
            key,
            before.find((r) => r.tenant === key.tenant && r.kind === key.kind && r.name === key.name)?.spec,
            spec,
          );
        } else if (c.op === "delete") resources.deleteTx(tx, keyOf(c), { actor: opts.actor });
      }
    }
    return { changes, summary, applied: !opts.dryRun };
  });
}
