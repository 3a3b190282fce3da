import { KindGuard, type TSchema } from "@sinclair/typebox";
import { closest } from "../../errors/index.ts";
import { MAX_FIELD_DEPTH, unknownField } from "../../events/fields.ts";
import { telnyxPublicKey } from "./public-key.ts";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { type ValueError, type ValueErrorIterator, ValueErrorType } from "@sinclair/typebox/value";
import {
  type BindingSpec,
  type EndpointSpec,
  KIND_NAMES,
  KINDS,
  type Kind,
  NAME_PATTERN,
  ROUTE_TARGET_PATTERN,
  TOOL_ID_PATTERN,
  type PolicySpec,
  type RouteSpec,
  SINGULAR,
  type TemplateSpec,
  TenantSpec,
  type TenantSpec as Tenant,
  VAULT_REF_PATTERN,
} from "./specs.ts";

/**
 * Validation of resources (docs/desired-state.md), shared by the HTTP API (one resource at a time) and by the
 * desired-state loader (a whole file). Two layers:
 *   - validateSpec: the shape of one resource, from its TypeBox schema, every problem at once;
 *   - checkTenant / checkGlobal: the rules a schema cannot say (references, uniqueness, which
 *     fields a binding type needs, vault isolation).
 */

// ---------------------------------------------------------------------------------------------
// Shape: schema problems in words an operator can act on

export interface FieldProblem {
  /** JSON pointer relative to the resource: "/retry/max_attempts"; "" is the resource itself. */
  pointer: string;
  message: string;
  /**
   * Set when what is wrong is the field's presence, not its value: the message names the field
   * itself, and an editor should point at the key ("unknown") or at the object ("missing").
   */
  presence?: "unknown" | "missing";
}

/** Every pattern of specs.ts in words: a message says what is expected, never the regex. */
const PATTERN_WORDS: Record<string, string> = {
  [NAME_PATTERN]: "lower-case letters, digits and dashes (1-63 characters, no dash at either end)",
  [VAULT_REF_PATTERN]: "a vault reference, vault:<tenant>/<name>",
  "^\\d+(ms|s|m|h|d)$": "a duration such as 30s, 5m or 24h (units ms, s, m, h, d)",
  "^https?://[^\\s]+$": "an http:// or https:// URL",
  "^\\+[1-9]\\d{6,14}$": 'a phone number in E.164 form, quoted, e.g. "+15551234567"',
  "^[a-z0-9][a-z0-9._-]*$": "a mailbox local part: lower-case letters, digits, '.', '_' and '-'",
  "^[A-Za-z0-9-]+$": "an HTTP header name: letters, digits and dashes",
  [TOOL_ID_PATTERN]: "lower-case letters, digits, '_', '.' and '-' (1-63 characters)",
  [ROUTE_TARGET_PATTERN]: "an endpoint's name, or agent:<name> (lower-case letters, digits and dashes)",
  "^[a-z_][a-z0-9_.]*$": "an envelope field such as channel, agent or data.subject",
};

/** What a pattern asks for, in words (the docs' field tables use the same words). */
export function patternWords(pattern: string): string {
  return PATTERN_WORDS[pattern] ?? `text matching /${pattern}/`;
}

const RESOURCE_SCHEMAS: Record<Kind | "tenants", TSchema> = { tenants: TenantSpec, ...KINDS };
const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** Every schema problem of one resource of `kind`, one per field, in schema order. */
export function validateSpec(kind: Kind | "tenants", value: unknown): FieldProblem[] {
  return validateValue(RESOURCE_SCHEMAS[kind], value);
}

/** validateSpec for any schema (the desired-state file is one schema made of the kinds). */
export function validateValue(schema: TSchema, value: unknown): FieldProblem[] {
  let checker = checkers.get(schema);
  if (!checker) checkers.set(schema, (checker = TypeCompiler.Compile(schema)));
  if (checker.Check(value)) return [];
  // One problem per pointer: TypeBox reports a missing field twice (required, then its type),
  // and the first is the one that says what to do.
  const byPointer = new Map<string, FieldProblem>();
  for (const p of problemsOf(checker.Errors(value))) if (!byPointer.has(p.pointer)) byPointer.set(p.pointer, p);
  return [...byPointer.values()];
}

function problemsOf(errors: ValueErrorIterator): FieldProblem[] {
  return [...errors].flatMap(toProblems);
}

function toProblems(e: ValueError): FieldProblem[] {
  const pointer = e.path;
  const key = unescape(pointer.slice(pointer.lastIndexOf("/") + 1));
  const s = e.schema as Record<string, unknown>;
  const problem = (message: string): FieldProblem[] => [{ pointer, message }];
  switch (e.type) {
    case ValueErrorType.Union:
      return unionProblems(e);
    case ValueErrorType.ObjectRequiredProperty:
      return [{ pointer, message: `missing required field '${key}'`, presence: "missing" }];
    case ValueErrorType.ObjectAdditionalProperties: {
      if (KindGuard.IsRecord(e.schema)) {
        const [keyPattern = ""] = Object.keys(s.patternProperties as object);
        return [
          { pointer, message: `'${key}' is not a valid key: must be ${patternWords(keyPattern)}`, presence: "unknown" },
        ];
      }
      const near = closest(key, Object.keys((s.properties as object) ?? {}));
      return [
        { pointer, message: `unknown field '${key}'${near ? ` (did you mean '${near}'?)` : ""}`, presence: "unknown" },
      ];
    }
    case ValueErrorType.StringPattern:
      return problem(`must be ${patternWords(String(s.pattern))}`);
    case ValueErrorType.StringMinLength:
      return problem(s.minLength === 1 ? "must not be empty" : `must be at least ${s.minLength} characters`);
    case ValueErrorType.StringMaxLength:
      return problem(`must be at most ${s.maxLength} characters`);
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return problem(`must be at least ${s.minimum}`);
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return problem(`must be at most ${s.maximum}`);
    case ValueErrorType.ArrayMinItems:
      return problem(s.minItems === 1 ? "must list at least one item" : `must list at least ${s.minItems} items`);
    case ValueErrorType.ArrayUniqueItems:
      return problem(`lists ${JSON.stringify(firstRepeat(e.value))} more than once`);
    case ValueErrorType.ObjectMinProperties:
      return problem(`must not be empty: give one of ${Object.keys((s.properties as object) ?? {}).join(", ")}`);
    case ValueErrorType.Literal:
      return problem(`must be ${String(s.const)}`);
    case ValueErrorType.Boolean:
      return problem("must be true or false");
    case ValueErrorType.String:
    case ValueErrorType.Integer:
    case ValueErrorType.Number:
    case ValueErrorType.Array:
    case ValueErrorType.Object:
      return problem(`must be ${typeWords(e.schema)}${typeHint(e)}`);
    default:
      return problem(e.message);
  }
}

/** YAML turns `url:` into null and `+15551234567` into a number: say so. */
function typeHint(e: ValueError): string {
  if (e.value === null || e.value === undefined) return " (it is empty)";
  if (typeof e.value === "number" && e.type === ValueErrorType.String) return " (put it in quotes)";
  return "";
}

/**
 * TypeBox reports a union as "Expected union value" plus every branch's errors. Collapse it:
 * a list of literals becomes "must be one of", an object checked against the one object branch
 * gets that branch's own errors (an unknown key inside a condition), anything else one line.
 */
function unionProblems(e: ValueError): FieldProblem[] {
  const branches = KindGuard.IsUnion(e.schema) ? e.schema.anyOf : [];
  if (branches.every(KindGuard.IsLiteral)) {
    return [{ pointer: e.path, message: `must be one of: ${branches.map((b) => String(b.const)).join(", ")}` }];
  }
  const objectBranches = branches.flatMap((b, i) => (KindGuard.IsObject(b) ? [i] : []));
  const [only] = objectBranches;
  if (isPlainObject(e.value) && objectBranches.length === 1 && only !== undefined && e.errors[only]) {
    return problemsOf(e.errors[only]);
  }
  return [{ pointer: e.path, message: `must be ${orList(branches.map(typeWords))}` }];
}

/** A schema's type in words: "a string", "a whole number", "an object (equals, contains)". */
export function typeWords(schema: TSchema): string {
  if (KindGuard.IsLiteral(schema)) return JSON.stringify(schema.const);
  if (KindGuard.IsUnion(schema)) return orList(schema.anyOf.map(typeWords));
  if (KindGuard.IsString(schema)) return "a string";
  if (KindGuard.IsInteger(schema)) return "a whole number";
  if (KindGuard.IsNumber(schema)) return "a number";
  if (KindGuard.IsBoolean(schema)) return "a boolean";
  if (KindGuard.IsArray(schema)) return "a list";
  if (KindGuard.IsObject(schema)) {
    const keys = Object.keys(schema.properties);
    return keys.length ? `an object (${keys.join(", ")})` : "an object";
  }
  if (KindGuard.IsRecord(schema)) return "an object";
  return "a value";
}

function orList(words: string[]): string {
  return words.length < 2 ? (words[0] ?? "") : `${words.slice(0, -1).join(", ")} or ${words.at(-1)}`;
}

function firstRepeat(list: unknown): unknown {
  const seen = new Set<string>();
  for (const item of Array.isArray(list) ? list : []) {
    const k = JSON.stringify(item);
    if (seen.has(k)) return item;
    seen.add(k);
  }
  return undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Paths: JSON pointers for machines, dotted paths for people

/** "/match/auth.dmarc/0" → ["match", "auth.dmarc", "0"] (RFC 6901 unescaping). */
export function pointerSegments(pointer: string): string[] {
  return pointer === "" ? [] : pointer.slice(1).split("/").map(unescape);
}

function unescape(segment: string): string {
  return segment.replaceAll("~1", "/").replaceAll("~0", "~");
}

/** ["retry", "max_attempts"] → retry.max_attempts; ["to", 1] → to[1]; ["when", "auth.dmarc"] → when["auth.dmarc"]. */
export function fieldPath(segments: readonly (string | number)[]): string {
  return segments
    .map((s, i) => {
      if (typeof s === "number" || /^\d+$/.test(s)) return `[${s}]`;
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s)) return i === 0 ? s : `.${s}`;
      return `[${JSON.stringify(s)}]`;
    })
    .join("");
}

/** A problem as one phrase: "retry.max_attempts must be at least 1", "retry: unknown field 'foo'". */
export function describeProblem(p: FieldProblem): string {
  const segments = pointerSegments(p.pointer);
  if (p.presence) {
    const parent = fieldPath(segments.slice(0, -1));
    return parent ? `${parent}: ${p.message}` : p.message;
  }
  const path = fieldPath(segments);
  return path ? `${path} ${p.message}` : p.message;
}

// ---------------------------------------------------------------------------------------------
// Meaning: the rules between resources

export interface TenantState {
  tenant: Tenant;
  endpoints: EndpointSpec[];
  bindings: BindingSpec[];
  routes: RouteSpec[];
  policies: PolicySpec[];
  templates: TemplateSpec[];
}

export interface RefProblem {
  kind: Kind | "tenants";
  name: string;
  /** Position in its list, which tells two resources of the same name apart. */
  index: number;
  /** JSON pointer relative to the resource ("" for the resource itself). */
  pointer: string;
  message: string;
}

export interface GlobalProblem extends RefProblem {
  tenant: string;
  /** Position of the tenant in the list given to checkGlobal. */
  tenantIndex: number;
  /**
   * A value claimed by two tenants: the other claimant. `message` names it, for a file that
   * declares both; the API tells each tenant only that another one holds it (control/service.ts).
   */
  other?: { tenant: string; binding: string; pointer: string; value: string };
}

/** Every rule of one tenant that its schemas cannot express. */
export function checkTenant(state: TenantState): RefProblem[] {
  const tenant = state.tenant.name;
  const problems: RefProblem[] = [];
  const report = (kind: Kind | "tenants", index: number, name: string, pointer: string, message: string) =>
    problems.push({ kind, name, index, pointer, message });

  // Names are unique within a kind: they address the resource in URLs and in the file.
  for (const kind of KIND_NAMES) {
    const seen = new Set<string>();
    state[kind].forEach((r, i) => {
      if (seen.has(r.name))
        report(kind, i, r.name, "/name", `${SINGULAR[kind]} '${r.name}' is declared twice in tenant ${tenant}`);
      seen.add(r.name);
    });
  }

  // Routes deliver to endpoints of their own tenant, and one route at most is the fallback. An
  // agent target (`agent:<name>`) names a claim, which comes and goes at run time: a delivery to
  // an agent not claimed then is dead with that reason (src/dispatch/run.ts).
  const endpoints = new Set(state.endpoints.map((e) => e.name));
  let defaultRoute: string | null = null;
  state.routes.forEach((r, i) => {
    r.to.forEach((target, j) => {
      if (!target.startsWith("agent:") && !endpoints.has(target))
        report("routes", i, r.name, `/to/${j}`, `no endpoint '${target}' in tenant ${tenant}`);
    });
    if (r.default && defaultRoute !== null) {
      report(
        "routes",
        i,
        r.name,
        "/default",
        `only one route can be the default, and route '${defaultRoute}' already is`,
      );
    }
    if (r.default) defaultRoute ??= r.name;
    for (const p of conditionProblems(r.match, "/match", { action: false, route: true }))
      report("routes", i, r.name, p.pointer, p.message);
  });
  state.policies.forEach((p, i) => {
    for (const b of policyProblems(p)) report("policies", i, p.name, b.pointer, b.message);
  });

  // guarantee 5 (docs/guarantees.md): a tenant's resources may only name its own secrets.
  for (const ref of vaultRefsAt(state)) {
    const owner = ref.ref.slice("vault:".length, ref.ref.indexOf("/"));
    if (owner !== tenant) {
      report(
        ref.kind,
        ref.index,
        ref.name,
        ref.pointer,
        `${ref.ref} is a secret of tenant ${owner}; tenant ${tenant} can only use its own (vault:${tenant}/…)`,
      );
    }
  }

  // Bindings: what each type needs, and each address or number resolves to one binding.
  const owners = new Map<string, string>();
  state.bindings.forEach((b, i) => {
    for (const p of bindingProblems(b)) report("bindings", i, b.name, p.pointer, p.message);
    const claim = (what: "address" | "number", value: string, pointer: string) => {
      const owner = owners.get(`${what}:${value}`);
      if (owner === undefined) owners.set(`${what}:${value}`, b.name);
      else
        report(
          "bindings",
          i,
          b.name,
          pointer,
          `${what} '${value}' already belongs to binding '${owner}'; it can belong to one binding only`,
        );
    };
    if (b.type === "email") b.addresses?.forEach((a, j) => claim("address", a, `/addresses/${j}`));
    if (b.type === "telnyx") b.numbers?.forEach((n, j) => claim("number", n, `/numbers/${j}`));
  });

  state.templates.forEach((t, i) => {
    const tools = new Set<string>();
    t.tools?.forEach((tool, j) => {
      if (tools.has(tool.id)) report("templates", i, t.name, `/tools/${j}/id`, `tool '${tool.id}' is listed twice`);
      tools.add(tool.id);
    });
  });

  return problems;
}

/** What a policy's schema cannot say: every `matches` must be a regular expression that compiles. */
function policyProblems(p: PolicySpec): FieldProblem[] {
  return p.rules.flatMap((rule, j) => conditionProblems(rule.when, `/rules/${j}/when`, { action: true }));
}

/** The rules for the global policies: unique names, and what each policy's schema cannot say. */
export function checkGlobalPolicies(policies: readonly PolicySpec[]): RefProblem[] {
  const problems: RefProblem[] = [];
  const seen = new Set<string>();
  policies.forEach((p, i) => {
    if (seen.has(p.name))
      problems.push({
        kind: "policies",
        name: p.name,
        index: i,
        pointer: "/name",
        message: "is declared twice: each global policy has its own name",
      });
    seen.add(p.name);
    for (const b of policyProblems(p))
      problems.push({ kind: "policies", name: p.name, index: i, pointer: b.pointer, message: b.message });
  });
  return problems;
}

/** Schemes that check a shared secret; `none` and `telnyx-ed25519` take none. */
const SECRET_SCHEMES = new Set(["standard-webhooks", "github-hmac-sha256", "hmac-sha256", "bearer"]);

/** What a binding of each type needs, and which verify fields its scheme uses. */
function bindingProblems(b: BindingSpec): FieldProblem[] {
  const out: FieldProblem[] = [];
  const need = (pointer: string, message: string) => out.push({ pointer, message });
  if (b.type !== "email" && b.addresses) need("/addresses", "only email bindings take addresses");
  if (b.type !== "telnyx" && b.numbers) need("/numbers", "only telnyx bindings take numbers");
  if (b.type !== "webhook" && b.require_json !== undefined)
    need("/require_json", "only webhook bindings take require_json");
  if (b.type !== "webhook" && b.plain_http !== undefined) need("/plain_http", "only webhook bindings take plain_http");
  if (b.type === "email" && (b.rate_per_minute !== undefined || b.max_body_bytes !== undefined))
    need("", "email bindings take neither rate_per_minute nor max_body_bytes (see the smtp_* settings)");
  const v = b.verify;
  if (b.type === "email") {
    if (!b.addresses) need("", "an email binding needs addresses: the agents it takes mail for, e.g. [hello]");
    // Mail is authenticated by SPF, DKIM and DMARC on the SMTP side; a verify block would be ignored.
    if (v) need("/verify", "email is checked with SPF, DKIM and DMARC; verify is for webhook and telnyx bindings");
    return out;
  }
  if (b.type === "telnyx") {
    if (!b.numbers) need("", 'a telnyx binding needs numbers, e.g. ["+15551234567"]');
    if (!v) need("", "a telnyx binding needs verify: { scheme: telnyx-ed25519, public_key: … }");
    else if (v.scheme !== "telnyx-ed25519")
      need("/verify/scheme", "a telnyx binding is verified with scheme telnyx-ed25519");
  }
  if (b.type === "webhook") {
    // An unsigned webhook is a choice the operator makes in writing, never a default.
    if (!v) need("", "a webhook binding needs verify (write verify: { scheme: none } to accept unsigned requests)");
    else if (v.scheme === "telnyx-ed25519") need("/verify/scheme", "scheme telnyx-ed25519 is for telnyx bindings");
  }
  if (!v) return out;
  if (SECRET_SCHEMES.has(v.scheme) && !v.secret) need("/verify", `scheme ${v.scheme} needs secret (a vault reference)`);
  if (!SECRET_SCHEMES.has(v.scheme) && v.secret) need("/verify/secret", `scheme ${v.scheme} takes no secret`);
  if (v.scheme === "hmac-sha256" && !v.header)
    need("/verify", "scheme hmac-sha256 needs header: the request header that carries the signature");
  if (v.header && v.scheme !== "hmac-sha256" && v.scheme !== "bearer")
    need("/verify/header", "only schemes hmac-sha256 and bearer take a header");
  if (v.encoding && v.scheme !== "hmac-sha256") need("/verify/encoding", "only scheme hmac-sha256 takes an encoding");
  if (v.scheme === "telnyx-ed25519" && !v.public_key)
    need("/verify", "scheme telnyx-ed25519 needs public_key: the Telnyx account's public key");
  // Parsed now, not at the first request: a key that does not parse would refuse every one of them.
  if (v.scheme === "telnyx-ed25519" && v.public_key && !telnyxPublicKey(v.public_key.trim())) {
    need(
      "/verify/public_key",
      "verify.public_key is not an Ed25519 public key: give the base64 of its 32 bytes (as the " +
        "Telnyx portal shows it), or a PEM or base64 DER SubjectPublicKeyInfo",
    );
  }
  if (v.public_key && v.scheme !== "telnyx-ed25519")
    need("/verify/public_key", "only scheme telnyx-ed25519 takes a public_key");
  return out;
}

/**
 * What a route's `match` or a policy rule's `when` cannot say in its schema: every field is one an
 * event (or the policy's action) has, since a misspelt one never matches and silently disables
 * the rule; a field deeper than the engine looks (MAX_FIELD_DEPTH segments) could never match;
 * `matches` conditions are regular expressions that compile (one that does not would fail every event).
 */
function conditionProblems(
  match: Record<string, unknown> | undefined,
  at: string,
  opts: { action: boolean; route?: boolean },
): FieldProblem[] {
  return Object.entries(match ?? {}).flatMap(([field, cond]) => {
    const pointer = `${at}/${field.replaceAll("~", "~0").replaceAll("/", "~1")}`;
    if (field.split(".", MAX_FIELD_DEPTH + 1).length > MAX_FIELD_DEPTH) {
      return [{ pointer, message: `a field has at most ${MAX_FIELD_DEPTH} dotted segments` }];
    }
    const unknown = unknownField(field, opts);
    if (unknown) return [{ pointer, message: unknown }];
    const source = isPlainObject(cond) ? cond.matches : undefined;
    if (typeof source !== "string") return [];
    try {
      new RegExp(source);
      return [];
    } catch (e) {
      return [
        {
          pointer: `${at}/${field.replaceAll("~", "~0").replaceAll("/", "~1")}/matches`,
          message: `is not a valid regular expression: ${(e as Error).message}`,
        },
      ];
    }
  });
}

/** The rules that span tenants: a Telnyx number resolves the tenant, so it names exactly one. */
export function checkGlobal(states: TenantState[]): GlobalProblem[] {
  const problems: GlobalProblem[] = [];
  const tenants = new Set<string>();
  const numbers = new Map<string, { tenantIndex: number; tenant: string; binding: string; pointer: string }>();
  states.forEach((state, tenantIndex) => {
    const tenant = state.tenant.name;
    const report = (p: Omit<GlobalProblem, "tenant" | "tenantIndex">) => problems.push({ ...p, tenant, tenantIndex });
    if (tenants.has(tenant))
      report({
        kind: "tenants",
        name: tenant,
        index: tenantIndex,
        pointer: "/name",
        message: `tenant '${tenant}' is declared twice`,
      });
    tenants.add(tenant);
    state.bindings.forEach((b, index) => {
      if (b.type !== "telnyx") return;
      b.numbers?.forEach((n, j) => {
        const owner = numbers.get(n);
        if (!owner) numbers.set(n, { tenantIndex, tenant, binding: b.name, pointer: `/numbers/${j}` });
        // The same tenant twice is checkTenant's to report.
        else if (owner.tenantIndex !== tenantIndex) {
          report({
            kind: "bindings",
            name: b.name,
            index,
            pointer: `/numbers/${j}`,
            message: `number ${n} already belongs to tenant ${owner.tenant} (binding '${owner.binding}'); a number can route to one tenant only`,
            other: { tenant: owner.tenant, binding: owner.binding, pointer: owner.pointer, value: n },
          });
        }
      });
    });
  });
  return problems;
}

export interface VaultRefAt {
  kind: Kind;
  index: number;
  name: string;
  pointer: string;
  ref: string;
}

/** Where the vault references of a tenant are: the only three fields that hold one. */
export function vaultRefsAt(state: TenantState): VaultRefAt[] {
  const refs: VaultRefAt[] = [];
  const add = (kind: Kind, index: number, name: string, pointer: string, ref: string | undefined) => {
    if (ref !== undefined) refs.push({ kind, index, name, pointer, ref });
  };
  state.endpoints.forEach((e, i) => add("endpoints", i, e.name, "/signing_secret", e.signing_secret));
  state.bindings.forEach((b, i) => add("bindings", i, b.name, "/verify/secret", b.verify?.secret));
  state.templates.forEach((t, i) => {
    add("templates", i, t.name, "/model/api_key", t.model.api_key);
    t.secrets?.forEach((ref, j) => add("templates", i, t.name, `/secrets/${j}`, ref));
  });
  return refs;
}

/** Every vault secret a tenant's resources refer to, once each, sorted: apply checks they exist. */
export function vaultRefs(state: TenantState): string[] {
  return [...new Set(vaultRefsAt(state).map((r) => r.ref))].sort();
}
