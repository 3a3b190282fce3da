import type { Envelope } from "../events/envelope.ts";
import { MAX_FIELD_DEPTH } from "../events/fields.ts";
import { EFFECTS, type PolicySpec } from "../control/resources/specs.ts";

/**
 * The policy engine (docs/desired-state.md#policies): pure and deterministic. A policy document is compiled once per
 * version into closures; evaluating it does no I/O and allocates almost nothing, so the
 * dispatcher can ask for every task. docs/desired-state.md#policies is the user's view.
 *
 * Within one policy the first rule whose `when` holds decides; with no match, the policy's
 * `default` (allow when it declares none). Across policies the most restrictive decision wins
 * (deny > quarantine > require_approval > allow); on a tie, the first policy in order.
 */

export type Effect = (typeof EFFECTS)[number];

export type Action =
  | { kind: "dispatch"; target: string }
  | { kind: "tool.call"; tool: string; args: Record<string, unknown> };

export interface PolicyRef {
  tenant: string;
  name: string;
  version: number;
}

export interface Decision {
  effect: Effect;
  /** The policy that decided, or null when no policy applies (then: allow). */
  policy: PolicyRef | null;
  /** Index of the rule that matched (from 0, as in the policy's `rules`), or null for the policy's default. */
  rule: number | null;
  /** That rule's `name`, when it has one. */
  ruleName?: string;
  reason: string | null;
}

const SEVERITY: Record<Effect, number> = { allow: 0, require_approval: 1, quarantine: 2, deny: 3 };
const ACTION_FIELDS = new Set(["target", "tool", "action", "args"]);

type Getter = (event: Envelope, action: Action) => unknown;
type Test = (value: unknown) => boolean;

function walk(root: unknown, parts: readonly string[]): unknown {
  let v = root;
  for (const p of parts) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

/** The envelope's own top-level fields (docs/envelope.md); any other first segment is looked up under `data`. */
const ENVELOPE_FIELDS = new Set([
  "id",
  "version",
  "type",
  "tenant",
  "agent",
  "channel",
  "source",
  "received_at",
  "trace_id",
  "idempotency_key",
  "data",
]);

export { MAX_FIELD_DEPTH };

/** A getter for a fixed path, specialised for the short paths policies use most. */
function pathGetter(parts: readonly string[]): (root: unknown) => unknown {
  if (parts.length === 1) {
    const [a] = parts as [string];
    return (r) => (r as Record<string, unknown>)[a];
  }
  if (parts.length === 2) {
    const [a, b] = parts as [string, string];
    return (r) => {
      const v = (r as Record<string, unknown>)[a];
      return v !== null && typeof v === "object" ? (v as Record<string, unknown>)[b] : undefined;
    };
  }
  return (r) => walk(r, parts);
}

/**
 * A field of the action (`target`, `tool`, `action`, `args.*`) or of the envelope, dotted. A key
 * whose first segment is not an envelope field is a field of `data`: `auth.dmarc` is
 * data.auth.dmarc, as docs/desired-state.md's example writes it. Decided once, at compile time.
 */
export function compileGetter(key: string): Getter {
  const parts = key.split(".", MAX_FIELD_DEPTH + 1);
  if (parts.length > MAX_FIELD_DEPTH) return () => undefined;
  if (ACTION_FIELDS.has(parts[0]!)) {
    const args = pathGetter(parts.slice(1));
    switch (parts[0]) {
      case "action":
        return (_e, a) => a.kind;
      case "target":
        return (_e, a) => (a.kind === "dispatch" ? a.target : undefined);
      case "tool":
        return (_e, a) => (a.kind === "tool.call" ? a.tool : undefined);
      default:
        return (_e, a) => (a.kind === "tool.call" ? args(a.args) : undefined);
    }
  }
  const get = pathGetter(ENVELOPE_FIELDS.has(parts[0]!) ? parts : ["data", ...parts]);
  return (e) => get(e);
}

type Condition = PolicySpec["rules"][number]["when"][string];

export function compileTest(c: Condition): Test {
  if (c === null || typeof c !== "object") return (v) => v === c;
  const tests: Test[] = [];
  if (c.equals !== undefined) tests.push((v) => v === c.equals);
  if (c.contains !== undefined) tests.push((v) => typeof v === "string" && v.includes(c.contains!));
  if (c.in !== undefined) {
    const set = new Set<unknown>(c.in);
    tests.push((v) => set.has(v));
  }
  if (c.matches !== undefined) {
    const re = new RegExp(c.matches);
    tests.push((v) => (typeof v === "string" || typeof v === "number") && re.test(String(v)));
  }
  if (tests.length === 1) return tests[0]!;
  return (v) => {
    for (let i = 0; i < tests.length; i++) if (!tests[i]!(v)) return false;
    return true;
  };
}

/** Every condition must hold; an empty `when` always holds. */
export function compileMatch(when: Record<string, Condition>): (event: Envelope, action: Action) => boolean {
  const gets = Object.keys(when).map(compileGetter);
  const tests = Object.values(when).map(compileTest);
  const n = gets.length;
  if (n === 1) {
    const [get, t] = [gets[0]!, tests[0]!];
    return (e, a) => t(get(e, a));
  }
  return (e, a) => {
    for (let i = 0; i < n; i++) if (!tests[i]!(gets[i]!(e, a))) return false;
    return true;
  };
}

export interface CompiledPolicy {
  readonly ref: PolicyRef;
  decide(event: Envelope, action: Action): Decision;
}

export function compilePolicy(spec: PolicySpec, ref: PolicyRef): CompiledPolicy {
  const matches = spec.rules.map((r) => compileMatch(r.when));
  const decisions: Decision[] = spec.rules.map((r, i) => ({
    effect: r.effect,
    policy: ref,
    rule: i,
    ...(r.name ? { ruleName: r.name } : {}),
    reason: r.reason ?? null,
  }));
  const fallback: Decision = { effect: spec.default ?? "allow", policy: ref, rule: null, reason: null };
  const n = matches.length;
  return {
    ref,
    decide(event, action) {
      for (let i = 0; i < n; i++) if (matches[i]!(event, action)) return decisions[i]!;
      return fallback;
    },
  };
}

const NO_POLICY: Decision = { effect: "allow", policy: null, rule: null, reason: null };

/** Combine the decisions of several policies (global first, then the tenant's): the most restrictive wins. */
export function decide(policies: readonly CompiledPolicy[], event: Envelope, action: Action): Decision {
  let best = NO_POLICY;
  let first = true;
  for (const p of policies) {
    const d = p.decide(event, action);
    if (first || SEVERITY[d.effect] > SEVERITY[best.effect]) best = d;
    first = false;
  }
  return best;
}

/**
 * Compiled policies: each version is compiled once, and only the version last asked for is kept
 * per policy (decisions already made record the version that made them).
 */
export class PolicyCache {
  private readonly compiled = new Map<string, CompiledPolicy>();

  get(spec: PolicySpec, ref: PolicyRef): CompiledPolicy {
    const key = `${ref.tenant}/${ref.name}`;
    let p = this.compiled.get(key);
    if (!p || p.ref.version !== ref.version) {
      p = compilePolicy(spec, ref);
      this.compiled.set(key, p);
    }
    return p;
  }

  get size(): number {
    return this.compiled.size;
  }
}
