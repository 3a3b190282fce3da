import type { Static } from "@sinclair/typebox";
import type { Document } from "yaml";
import { yaml } from "../../core/yaml.ts";
import { KIND_NAMES, type Kind, type PolicySpec, SINGULAR } from "../resources/specs.ts";
import {
  checkGlobal,
  checkGlobalPolicies,
  checkTenant,
  describeProblem,
  type FieldProblem,
  pointerSegments,
  type RefProblem,
  type TenantState,
  validateValue,
  vaultRefsAt,
} from "../resources/validate.ts";
import { yamlBoundsProblem } from "./bounds.ts";
import { positionOf } from "./locate.ts";
import { API_VERSION, DesiredFile, type DesiredState, type TenantDocument } from "./schema.ts";

/** A problem at its place in the file: 1-based line and column. */
export interface LocatedProblem {
  file: string;
  line: number;
  column: number;
  message: string;
}

/**
 * An anchor may be used this many times (an alias inside an anchor multiplies): enough to share
 * a retry block across endpoints, far too few for a "billion laughs" file to expand.
 */
export const MAX_ALIAS_COUNT = 50;

/** `file:line:col: message`, the form editors and CI annotations understand. */
export function formatProblem(p: LocatedProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.message}`;
}

/**
 * Read a desired-state file. Either the state, or every problem in it, sorted by position:
 * YAML syntax first (nothing else is checked in a file that does not parse), then schema
 * problems and the rules between resources. A tenant's rules are checked once its own schema
 * problems are fixed, so that a typo does not also show up as a dozen broken references.
 */
/**
 * A vault reference in the file, and where: the secret's existence (and form) is the vault's to
 * say, which this pure parse cannot ask, so the caller checks them and places what is wrong.
 */
export interface LocatedRef extends Omit<LocatedProblem, "message"> {
  ref: string;
  /** "endpoint beta/crm" */
  subject: string;
  /** The field that holds it: `signing_secret`, `verify.secret`, `model.api_key`. */
  field: string;
}

export function parseDesired(
  text: string,
  file: string,
): { state: DesiredState; refs: LocatedRef[] } | { errors: LocatedProblem[] } {
  // Nesting and aliases are counted before the yaml library runs: its work grows with both.
  const bound = yamlBoundsProblem(text);
  if (bound) return { errors: [{ file, ...bound }] };
  const { LineCounter, parseDocument } = yaml();
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number, message: string): LocatedProblem => {
    const { line, col } = lines.linePos(offset);
    return { file, line, column: col, message };
  };

  // YAML itself: syntax, duplicate keys, several documents in one file, unknown tags.
  const syntax = [...doc.errors, ...doc.warnings].map((e) =>
    at(
      e.pos[0],
      e.code === "DUPLICATE_KEY"
        ? `duplicate key '${keyAt(text, e.pos[0])}': a key may appear once per mapping`
        : e.message,
    ),
  );
  syntax.push(...aliasProblems(doc, at));
  if (syntax.length) return { errors: sorted(syntax) };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch {
    return {
      errors: [
        at(
          firstAliasOffset(doc),
          `aliases expand too much (more than ${MAX_ALIAS_COUNT} uses of an anchor); write the values out`,
        ),
      ],
    };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { errors: [at(0, `expected a mapping with apiVersion: ${API_VERSION} and tenants`)] };
  }

  const problems: LocatedProblem[] = [];
  const place = (pointer: string, target: "key" | "value", message: string) => {
    const { line, column } = positionOf(doc, lines, pointer, target);
    problems.push({ file, line, column, message });
  };

  // The shape of everything, from the resource schemas.
  const shape = validateValue(DesiredFile, value);
  for (const p of shape) place(p.pointer, p.presence === "unknown" ? "key" : "value", schemaMessage(value, p));

  // The rules between resources, for the tenants whose shape is right.
  const written = (value as { tenants?: unknown }).tenants;
  const tenants = Array.isArray(written) ? (written as Static<typeof TenantDocument>[]) : [];
  const wellFormed = tenants.flatMap((_, i) =>
    shape.some((p) => `${p.pointer}/`.startsWith(`/tenants/${i}/`)) ? [] : [i],
  );
  const states = wellFormed.map((i) => toState(tenants[i]!));
  const placeRef = (tenantIndex: number, p: RefProblem) => {
    const state = states[tenantIndex]!;
    const base =
      p.kind === "tenants"
        ? `/tenants/${wellFormed[tenantIndex]}`
        : `/tenants/${wellFormed[tenantIndex]}/${p.kind}/${p.index}`;
    const subject = p.kind === "tenants" ? `tenant ${p.name}` : `${SINGULAR[p.kind]} ${state.tenant.name}/${p.name}`;
    place(base + p.pointer, "value", `${subject}: ${p.message}`);
  };
  states.forEach((state, i) => {
    for (const p of checkTenant(state)) placeRef(i, p);
  });
  for (const p of checkGlobal(states)) placeRef(p.tenantIndex, p);

  // The global policies, when their shape is right.
  const declared = (value as { policies?: unknown }).policies;
  const globals =
    Array.isArray(declared) && !shape.some((p) => p.pointer.startsWith("/policies")) ? (declared as PolicySpec[]) : [];
  for (const p of checkGlobalPolicies(globals))
    place(`/policies/${p.index}${p.pointer}`, "value", `global policy ${p.name}: ${p.message}`);

  if (problems.length) return { errors: sorted(problems) };
  const refs = states.flatMap((state, i) =>
    vaultRefsAt(state).map((r): LocatedRef => {
      const { line, column } = positionOf(
        doc,
        lines,
        `/tenants/${wellFormed[i]}/${r.kind}/${r.index}${r.pointer}`,
        "value",
      );
      return {
        file,
        line,
        column,
        ref: r.ref,
        subject: `${SINGULAR[r.kind]} ${state.tenant.name}/${r.name}`,
        field: r.pointer.slice(1).replaceAll("/", "."),
      };
    }),
  );
  return { state: declared === undefined ? { tenants: states } : { tenants: states, policies: globals }, refs };
}

/** A tenant as written → the state plan() and apply work on: every kind present, maybe empty. */
function toState(t: Static<typeof TenantDocument>): TenantState {
  const { endpoints = [], bindings = [], routes = [], policies = [], templates = [], ...tenant } = t;
  return { tenant, endpoints, bindings, routes, policies, templates };
}

/**
 * A schema problem, said about the resource it belongs to: "endpoint beta/crm: retry.max_attempts
 * must be at least 1". The resource's name comes from the file when it is readable there.
 */
function schemaMessage(file: object, p: FieldProblem): string {
  const segments = pointerSegments(p.pointer);
  const rebased = (rest: string[]) =>
    describeProblem({ ...p, pointer: rest.map((s) => `/${s.replaceAll("~", "~0").replaceAll("/", "~1")}`).join("") });
  if (segments[0] === "policies" && segments.length >= 2) {
    const policy = ((file as { policies: unknown[] }).policies[Number(segments[1])] ?? {}) as { name?: unknown };
    return `global policy ${typeof policy.name === "string" ? policy.name : `#${Number(segments[1]) + 1}`}: ${rebased(segments.slice(2))}`;
  }
  if (segments[0] !== "tenants" || segments.length < 2) return rebased(segments);
  const i = Number(segments[1]);
  const tenant = ((file as { tenants: unknown[] }).tenants[i] ?? {}) as Record<string, unknown>;
  const tenantName = typeof tenant.name === "string" ? tenant.name : `#${i + 1}`;
  const kind = segments[2] as Kind;
  if (segments.length < 4 || !KIND_NAMES.includes(kind)) return `tenant ${tenantName}: ${rebased(segments.slice(2))}`;
  const j = Number(segments[3]);
  const list = tenant[kind];
  const resource = (Array.isArray(list) ? list[j] : undefined) as { name?: unknown } | null | undefined;
  const name =
    typeof resource?.name === "string" ? `${tenantName}/${resource.name}` : `#${j + 1} of tenant ${tenantName}`;
  return `${SINGULAR[kind]} ${name}: ${rebased(segments.slice(4))}`;
}

/** An alias whose anchor is not defined (or defined after it) is a mistake in the file. */
function aliasProblems(doc: Document, at: (offset: number, message: string) => LocatedProblem): LocatedProblem[] {
  const problems: LocatedProblem[] = [];
  const { visit } = yaml();
  visit(doc, {
    Alias(_, alias) {
      if (!alias.resolve(doc))
        problems.push(
          at(alias.range?.[0] ?? 0, `unknown alias *${alias.source}: its anchor &${alias.source} must come before it`),
        );
    },
  });
  return problems;
}

function firstAliasOffset(doc: Document): number {
  let offset = 0;
  const { visit } = yaml();
  visit(doc, {
    Alias(_, alias) {
      offset = alias.range?.[0] ?? 0;
      return visit.BREAK;
    },
  });
  return offset;
}

/** The key written at `offset` (yaml reports only where a duplicate key starts). */
function keyAt(text: string, offset: number): string {
  const key = /^("[^"]*"|'[^']*'|[^:,}\n]*)/.exec(text.slice(offset))?.[1] ?? "";
  return key.trim().replace(/^["']|["']$/g, "");
}

function sorted(problems: LocatedProblem[]): LocatedProblem[] {
  const seen = new Set<string>();
  return problems
    .filter((p) => !seen.has(formatProblem(p)) && seen.add(formatProblem(p)))
    .sort(
      (a, b) => a.line - b.line || a.column - b.column || (a.message < b.message ? -1 : a.message > b.message ? 1 : 0),
    );
}
