import { KindGuard, type TObject, type TSchema } from "@sinclair/typebox";
import { yaml } from "../core/yaml.ts";
import { MAX_ALIAS_COUNT, yamlBoundsProblem } from "../control/desired/index.ts";
import { type Kind, KINDS, SINGULAR, TenantSpec, VAULT_REF_PATTERN } from "../control/resources/specs.ts";
import { fieldPath, patternWords, pointerSegments } from "../control/resources/validate.ts";
import type { FieldError } from "../errors/index.ts";

/**
 * The configuration forms (docs/console.md#configuration), generated from the same TypeBox schemas
 * the API validates with (src/control/resources/specs.ts): one field per leaf of a kind's schema,
 * a nested object's fields named by their path (`retry.max_attempts`). What a plain control cannot
 * hold (a route's `match`, a policy's `rules`, a template's `tools`) is a YAML text area. The form
 * posts back a spec that the API's own write path validates; its field errors come back beside the
 * field their JSON pointer names.
 */

export type ConfigKind = Kind | "tenants";
export type FieldInput = "text" | "textarea" | "number" | "select" | "checkbox" | "lines" | "yaml";

export interface FieldDef {
  /** The field's place in the spec: ["retry", "max_attempts"]. */
  path: readonly string[];
  /** The form control's name: "retry.max_attempts". */
  name: string;
  input: FieldInput;
  required: boolean;
  options?: readonly string[];
  hint?: string;
  /** A `vault:` reference: the form takes the reference, never a secret's value. */
  secret: boolean;
}

/** A field as a page shows it: its definition, its value as text, the messages beside it. */
export interface FieldView extends FieldDef {
  value: string;
  checked: boolean;
  errors: string[];
}

export const SCHEMAS: Record<ConfigKind, TObject> = { tenants: TenantSpec, ...KINDS };
/** The kinds the console lists and edits, in the order a tenant's page shows them. */
export const CONSOLE_KINDS = ["bindings", "endpoints", "routes", "policies", "templates"] as const satisfies Kind[];
export const isConsoleKind = (k: string): k is (typeof CONSOLE_KINDS)[number] =>
  (CONSOLE_KINDS as readonly string[]).includes(k);
export const singular = (k: ConfigKind) => SINGULAR[k];

const YAML_HINTS: Record<string, string> = {
  match: "YAML: envelope fields and their conditions, one per line, e.g. channel: email",
  rules: "YAML: a list of rules, each with when, effect and optionally name and reason",
  tools: "YAML: a list of tools, each with name, provisioning and optionally config",
};

function inputOf(s: TSchema): Pick<FieldDef, "input" | "options" | "secret"> {
  if (KindGuard.IsUnion(s) && s.anyOf.every(KindGuard.IsLiteral))
    return { input: "select", options: s.anyOf.map((b) => String(b.const)), secret: false };
  if (KindGuard.IsString(s)) {
    if (s.pattern === VAULT_REF_PATTERN) return { input: "text", secret: true };
    return { input: (s.maxLength ?? 0) >= 4096 ? "textarea" : "text", secret: false };
  }
  if (KindGuard.IsInteger(s) || KindGuard.IsNumber(s)) return { input: "number", secret: false };
  if (KindGuard.IsBoolean(s)) return { input: "checkbox", secret: false };
  if (KindGuard.IsArray(s) && KindGuard.IsString(s.items)) return { input: "lines", secret: false };
  return { input: "yaml", secret: false };
}

function hintOf(key: string, s: TSchema, input: FieldInput, secret: boolean): string | undefined {
  if (input === "yaml") return YAML_HINTS[key] ?? "YAML";
  const item = KindGuard.IsArray(s) ? s.items : s;
  const pattern = KindGuard.IsString(item) ? item.pattern : undefined;
  const words = secret
    ? "a vault reference, vault:<tenant>/<name> (set the secret in the vault; never type the secret here)"
    : (s.description ?? (pattern ? `must be ${patternWords(pattern)}` : undefined));
  return input === "lines" ? `one per line${words ? `; each ${words.replace(/^must be /, "")}` : ""}` : words;
}

function defsOf(schema: TObject, prefix: string[], parentRequired: boolean): FieldDef[] {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties).flatMap(([key, s]) => {
    const path = [...prefix, key];
    const req = parentRequired && required.has(key);
    if (KindGuard.IsObject(s)) return defsOf(s, path, req);
    const how = inputOf(s);
    return [{ path, name: path.join("."), required: req, ...how, hint: hintOf(key, s, how.input, how.secret) }];
  });
}

const DEFS = new Map<ConfigKind, FieldDef[]>();
/** A kind's form fields, in schema order; `name` is left out when editing (the URL names it). */
export function fieldsOf(kind: ConfigKind, editing: boolean): FieldDef[] {
  let defs = DEFS.get(kind);
  if (!defs) DEFS.set(kind, (defs = defsOf(SCHEMAS[kind], [], true)));
  return editing ? defs.filter((d) => d.name !== "name") : defs;
}

function getPath(spec: unknown, path: readonly string[]): unknown {
  let v: unknown = spec;
  for (const k of path) v = v !== null && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

function setPath(spec: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let o = spec;
  for (const k of path.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[path.at(-1)!] = value;
}

/** The form's text for a stored value. */
function textOf(def: FieldDef, v: unknown): string {
  if (v === undefined) return "";
  if (def.input === "yaml") return yaml().stringify(v, { lineWidth: 0 });
  if (def.input === "lines") return Array.isArray(v) ? v.map(String).join("\n") : String(v);
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** The form's controls as text: from a stored spec. */
export function formFromSpec(kind: ConfigKind, spec: unknown, editing: boolean): URLSearchParams {
  const form = new URLSearchParams();
  for (const def of fieldsOf(kind, editing)) {
    const v = getPath(spec, def.path);
    if (def.input === "checkbox") {
      if (v === true) form.set(def.name, "true");
    } else form.set(def.name, textOf(def, v));
  }
  return form;
}

/**
 * The spec a submitted form stands for: an empty control is an absent field, a nested object
 * with no field set is left out. A number that is not one, or a value outside a select's options,
 * is passed on as typed so that the API's validator names the problem. A YAML area that does not
 * parse is a problem of its own (`local`), and the validator's messages about it are dropped.
 */
export function specFromForm(
  kind: ConfigKind,
  form: URLSearchParams,
  name?: string,
): { spec: Record<string, unknown>; local: FieldError[] } {
  const spec: Record<string, unknown> = {};
  const local: FieldError[] = [];
  if (name !== undefined) spec.name = name;
  for (const def of fieldsOf(kind, name !== undefined)) {
    const raw = form.get(def.name) ?? "";
    const text = def.input === "textarea" ? raw : raw.trim();
    let value: unknown;
    switch (def.input) {
      case "checkbox":
        value = form.has(def.name) ? true : undefined;
        break;
      case "number":
        value = text === "" ? undefined : /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
        break;
      case "lines": {
        const items = text
          .split(/\r?\n/)
          .map((l) => l.trim())
          .filter(Boolean);
        value = items.length ? items : undefined;
        break;
      }
      case "yaml": {
        if (text === "") break;
        const bound = yamlBoundsProblem(text);
        if (bound) {
          local.push({ field: `/${def.path.join("/")}`, message: `line ${bound.line}: ${bound.message}` });
          break;
        }
        try {
          value = yaml().parse(text, { maxAliasCount: MAX_ALIAS_COUNT });
        } catch (e) {
          local.push({
            field: `/${def.path.join("/")}`,
            message: `is not valid YAML: ${String((e as Error).message).split("\n")[0]}`,
          });
        }
        break;
      }
      default:
        value = text === "" ? undefined : text;
    }
    if (value !== undefined && value !== null) setPath(spec, def.path, value);
  }
  return { spec, local };
}

/**
 * Field errors (the API's: a JSON pointer into the spec, or `<tenant>/<kind>/<name><pointer>` for
 * a reference problem) beside the field they name: the deepest field the pointer is in, with the
 * rest of its path before the message when it points inside the field (`rules[0].effect: …`).
 * Errors no field holds are the form's own.
 */
export function placeErrors(
  defs: readonly FieldDef[],
  errors: readonly FieldError[],
  resourcePrefix: string,
): { byField: Map<string, string[]>; general: string[] } {
  const byField = new Map<string, string[]>();
  const general: string[] = [];
  for (const e of errors) {
    let pointer = e.field.startsWith(resourcePrefix) ? e.field.slice(resourcePrefix.length) : e.field;
    if (pointer === "/") pointer = "";
    if (pointer !== "" && !pointer.startsWith("/")) {
      general.push(`${e.field}: ${e.message}`);
      continue;
    }
    const segments = pointerSegments(pointer);
    let best: FieldDef | null = null;
    for (const d of defs)
      if (d.path.length <= segments.length && d.path.every((p, i) => p === segments[i]))
        if (!best || d.path.length > best.path.length) best = d;
    if (!best) {
      general.push(segments.length ? `${fieldPath(segments)}: ${e.message}` : e.message);
      continue;
    }
    const message = segments.length > best.path.length ? `${fieldPath(segments)}: ${e.message}` : e.message;
    byField.set(best.name, [...(byField.get(best.name) ?? []), message]);
  }
  return { byField, general };
}

/** The fields as a page shows them. */
export function fieldViews(
  kind: ConfigKind,
  form: URLSearchParams,
  editing: boolean,
  byField: Map<string, string[]> = new Map(),
): FieldView[] {
  return fieldsOf(kind, editing).map((d) => ({
    ...d,
    value: form.get(d.name) ?? "",
    checked: form.has(d.name),
    errors: byField.get(d.name) ?? [],
  }));
}
