import { yaml } from "../../core/yaml.ts";
import { GLOBAL, KIND_NAMES, SINGULAR } from "../resources/specs.ts";
import type { Change, FieldChange } from "./plan.ts";
import { API_VERSION, type DesiredState } from "./schema.ts";

export interface Summary {
  created: number;
  updated: number;
  unchanged: number;
  deleted: number;
}

export function summarize(changes: readonly Change[]): Summary {
  const count = (op: Change["op"]) => changes.filter((c) => c.op === op).length;
  return {
    created: count("create"),
    updated: count("update"),
    unchanged: count("unchanged"),
    deleted: count("delete"),
  };
}

const MARK = { create: "+", update: "~", delete: "-" } as const;

/**
 * A plan for people: one line per resource that changes (updates followed by their fields), then
 * the counts. Unchanged resources are only counted: listing them would bury the changes.
 *
 *   + create endpoint beta/crm
 *   ~ update route beta/hello-to-crm
 *     to: ["crm"] → ["crm","erp"]
 *   - delete binding beta/old
 *   1 created, 1 updated, 5 unchanged, 1 deleted
 */
export function renderPlan(changes: readonly Change[]): string {
  const lines: string[] = [];
  for (const c of changes) {
    if (c.op === "unchanged") continue;
    const what =
      c.kind === "tenants"
        ? `tenant ${c.name}`
        : c.tenant === GLOBAL
          ? `global ${SINGULAR[c.kind]} ${c.name}`
          : `${SINGULAR[c.kind]} ${c.tenant}/${c.name}`;
    lines.push(`${MARK[c.op]} ${c.op} ${what}`);
    for (const f of c.fields) lines.push(`  ${renderField(f)}`);
  }
  const s = summarize(changes);
  lines.push(`${s.created} created, ${s.updated} updated, ${s.unchanged} unchanged, ${s.deleted} deleted`);
  return `${lines.join("\n")}\n`;
}

function renderField(f: FieldChange): string {
  return `${f.path}: ${renderValue(f, "from")} → ${renderValue(f, "to")}`;
}

/** Compact JSON, cut short: a template's instructions can run to pages. */
function renderValue(f: FieldChange, side: "from" | "to"): string {
  if (!(side in f)) return "(unset)";
  const json = JSON.stringify(f[side]);
  return json.length > 80 ? `${json.slice(0, 79)}…` : json;
}

/**
 * A desired state as the YAML file `agentowl apply` takes (docs/desired-state.md): each tenant's
 * own fields, then its resources by kind in the file's order, a kind with none left out. Applying
 * it to the configuration it was read from changes nothing.
 */
export function renderDesired(state: DesiredState): string {
  const tenants = state.tenants.map((t) => {
    const doc: Record<string, unknown> = { ...t.tenant };
    for (const kind of KIND_NAMES) if (t[kind].length) doc[kind] = t[kind];
    return doc;
  });
  const file = { apiVersion: API_VERSION, tenants, ...(state.policies?.length ? { policies: state.policies } : {}) };
  return yaml().stringify(file, { lineWidth: 0 });
}
