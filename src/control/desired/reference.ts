import { KindGuard, type TObject, type TSchema } from "@sinclair/typebox";
import { KINDS, RouteSpec } from "../resources/specs.ts";
import { patternWords, typeWords } from "../resources/validate.ts";
import { DesiredFile, TenantDocument } from "./schema.ts";

/**
 * The field tables of docs/desired-state.md, generated from the schemas so that the docs cannot
 * drift from what validation accepts: types and limits come from specs.ts, the meaning of each
 * field from MEANING below. A test fails when a field has no meaning or the doc is stale;
 * `bun src/control/desired/reference.ts --write` rewrites the tables in place.
 */

/** One condition of a `match` / `when` map: the object branch of its union. */
const CONDITION = (() => {
  const match = RouteSpec.properties.match;
  const [condition] = Object.values(match.patternProperties) as TSchema[];
  const object = KindGuard.IsUnion(condition) ? condition.anyOf.find((b) => KindGuard.IsObject(b)) : undefined;
  if (!object || !KindGuard.IsObject(object))
    throw new Error("specs.ts: a condition is no longer a union with one object");
  return object;
})();

export const TABLES: Record<string, TObject> = {
  file: DesiredFile,
  tenant: TenantDocument,
  ...KINDS,
  condition: CONDITION,
};

/** What each field is for; keyed `<table>.<path>`. */
export const MEANING: Record<string, string> = {
  "file.apiVersion": "The format version of the file.",
  "file.tenants": "The tenants this file declares, each with its resources.",
  "file.policies":
    "Global policies (admin only), in the same form as a tenant's policies (below). They " +
    "decide for every tenant's events, together with the tenant's own: the most restrictive decision wins.",
  "tenant.name": "The tenant; mail to `agent@<name>.<mail_domain>` belongs to it. Unique across the appliance.",
  "tenant.display_name": "How the console shows the tenant.",
  "tenant.inbox": "The tenant's inbox in the console (`/t/<name>/inbox`, docs/console.md).",
  "tenant.retention":
    "How long this tenant's data is kept (docs/operations.md#retention); each duration overrides its setting. The hourly sweep deletes what is older.",
  "tenant.retention.events":
    "Events, with their deliveries and attempts (default: the `event_retention` setting, 90d).",
  "tenant.retention.content":
    "Parsed content of events: bodies, headers, attachments (default: `content_retention`, 30d); the event's metadata stays.",
  "tenant.retention.attempts":
    "Delivery attempts: status, error, response excerpt (default: `attempt_retention`, 30d).",
  "tenant.retention.audit":
    "Audit entries about this tenant (default: `audit_retention`, 365d); pruned from the start of the chain, under a signed checkpoint.",
  "tenant.inbox.public":
    "Anyone may read the inbox, its messages and their attachments without signing in (read-only), " +
    "also at `/inbound/email` on the host `<name>.<mail_domain>`. Default false: members of the tenant and admins only.",
  "tenant.endpoints": "The tenant's endpoints (below).",
  "tenant.bindings": "The tenant's bindings (below).",
  "tenant.routes": "The tenant's routes (below).",
  "tenant.policies": "The tenant's policies (below).",
  "tenant.templates": "The tenant's agent templates (below).",
  "endpoints.name": "Unique among the tenant's endpoints; routes name it in `to`.",
  "endpoints.url":
    "Where events are POSTed. The host, a name or an IP literal in any spelling, must be " +
    "loopback or the LAN unless `allow_public` (checked before every connect, see " +
    "docs/architecture.md, the egress guard).",
  "endpoints.signing_secret": "The secret deliveries are signed with (Standard Webhooks). A secret of this tenant.",
  "endpoints.retry": "When to give up on a delivery and dead-letter it.",
  "endpoints.retry.max_attempts": "Attempts before the delivery is dead-lettered.",
  "endpoints.retry.max_age": "Time after the first attempt before the delivery is dead-lettered.",
  "endpoints.timeout": "How long one attempt may take.",
  "endpoints.max_in_flight":
    "Deliveries to this endpoint at once (default 4). More wait in the queue, so one slow endpoint never holds up the others.",
  "endpoints.allow_public":
    "Allow a destination outside loopback and the LAN (guarantee 8 in " +
    "[guarantees.md](guarantees.md)), 100.64.0.0/10 included. Link-local, cloud metadata, " +
    "unspecified (0.0.0.0, ::), multicast and broadcast addresses are refused regardless, also " +
    "inside IPv4-mapped, NAT64, 6to4 and other IPv6 forms.",
  "bindings.name": "Unique among the tenant's bindings.",
  "bindings.type": "Where events come from: mail over SMTP, a webhook, or Telnyx (SMS and voice).",
  "bindings.addresses":
    "email only, required: the agents (local parts) accepted, `hello` → `hello@<tenant>.<mail_domain>`. Each in one binding of the tenant.",
  "bindings.numbers": "telnyx only, required: the destination numbers. A number belongs to one binding of one tenant.",
  "bindings.verify": "webhook and telnyx, required: how a request proves who sent it.",
  "bindings.verify.scheme": "The signature scheme; see Verify schemes.",
  "bindings.verify.secret":
    "The shared secret, for standard-webhooks, github-hmac-sha256, hmac-sha256 and bearer. A secret of this tenant.",
  "bindings.verify.public_key": "telnyx-ed25519 only, required: the Telnyx account's public key.",
  "bindings.verify.header":
    "hmac-sha256 (required): the header carrying the signature; bearer: the header carrying the token (default `Authorization`).",
  "bindings.verify.encoding": "hmac-sha256 only: how the signature is written.",
  "bindings.max_body_bytes": "Larger requests are refused with 413 (default 1 MiB).",
  "bindings.rate_per_minute":
    "webhook and telnyx: requests per minute (a token bucket with a minute's burst) before 429 " +
    "with Retry-After; default the `ingress_rate_per_binding` setting.",
  "bindings.require_json": "webhook only: a request whose Content-Type is not JSON is refused with 415.",
  "bindings.plain_http":
    "webhook only: also accept this binding's requests on the plain-HTTP listener " +
    "(`http_plain_listen`), for LAN senders that cannot do HTTPS; its signature (and any " +
    "bearer secret) then travels in clear.",
  "routes.name": "Unique among the tenant's routes.",
  "routes.match": "Conditions on the event, all of which must hold; no match means every event.",
  "routes.to": "Endpoints of this tenant the event is delivered to.",
  "routes.priority": "Routes are tried lowest first, ties by name.",
  "routes.default": "The fallback route for events no other route matches; at most one per tenant.",
  "policies.name": "Unique among the tenant's policies.",
  "policies.default": "The effect when no rule matches.",
  "policies.rules": "Tried in order; the first rule whose `when` holds decides.",
  "policies.rules[].name":
    "A name for the rule, shown with every decision it makes and to approvers (rules are numbered from 1 where they have none).",
  "policies.rules[].when": "Conditions on the event and the action (`target`, `tool`), all of which must hold.",
  "policies.rules[].effect": "What happens to the action.",
  "policies.rules[].reason": "Recorded with the decision and shown to approvers.",
  "templates.name": "Unique among the tenant's templates.",
  "templates.instructions": "The agent's instructions (system prompt).",
  "templates.model": "The model the agent runs on.",
  "templates.model.endpoint": "An OpenAI-compatible server on the LAN, e.g. Ollama's `http://10.0.0.9:11434/v1`.",
  "templates.model.default": "The model's name on that server.",
  "templates.model.allow_override": "Whether the runtime may ask for another model on the same server (default false).",
  "templates.model.api_key":
    "The key for that server, if it needs one. A secret of this tenant; the appliance adds it to each model call, the runtime never holds it.",
  "templates.model.allow_public": "Allow a model server outside loopback and the LAN (default false).",
  "templates.tools": "The tools the agent may call (each call goes through policy and audit).",
  "templates.tools[].id":
    "The tool's name as the model sees it, unique within the template. Its plugin is `config.plugin`, else the id's first segment (`email`, `http.crm` → `http`); `GET /v1/tools` lists the plugins.",
  "templates.tools[].provisioning":
    "`pool`: the appliance provisions it; `user`: credentials are supplied when the runtime is claimed (kept in the vault, never in the runtime).",
  "templates.tools[].config": "Settings passed to the tool's plugin.",
  "templates.visibility":
    "`tenant` (default): only this tenant claims it; `shared`: any tenant may, each in its own scope.",
  "templates.sandbox":
    "`preferred` (default): sandboxed wherever the OS allows; `required`: a claim is refused where runtimes can only run as plain processes.",
  "templates.command":
    "Run this program (argv) instead of the built-in runtime; it must speak the runtime protocol (docs/runtime-protocol.md).",
  "templates.secrets": "Secrets of this tenant the runtime may ask for over its socket; each lease is audited.",
  "condition.equals": "The field equals this value.",
  "condition.contains": "The field (text) contains this.",
  "condition.in": "The field equals one of these.",
  "condition.matches": "The field matches this regular expression (JavaScript syntax).",
};

export interface FieldRow {
  table: string;
  path: string;
  value: string;
  required: boolean;
  meaning: string | undefined;
}

/** Every field of every table, parents before children. */
export function fieldRows(): FieldRow[] {
  return Object.entries(TABLES).flatMap(([table, schema]) => rowsOf(table, schema, ""));
}

function rowsOf(table: string, schema: TObject, prefix: string): FieldRow[] {
  return Object.entries(schema.properties).flatMap(([key, field]) => {
    const path = prefix + key;
    const row: FieldRow = {
      table,
      path,
      value: valueWords(field),
      required: schema.required?.includes(key) ?? false,
      meaning: MEANING[`${table}.${path}`],
    };
    const inner = KindGuard.IsArray(field) ? field.items : field;
    // A table stops where another table starts (a tenant's endpoints, the file's tenants).
    const ownTable = Object.values(TABLES).includes(inner as TObject);
    if (!KindGuard.IsObject(inner) || ownTable) return [row];
    return [row, ...rowsOf(table, inner, `${path}${KindGuard.IsArray(field) ? "[]" : ""}.`)];
  });
}

/** A field's type and limits, in the words validation uses for its messages. */
function valueWords(s: TSchema): string {
  if (KindGuard.IsLiteral(s)) return `\`${String(s.const)}\``;
  if (KindGuard.IsUnion(s) && s.anyOf.every(KindGuard.IsLiteral))
    return `one of ${s.anyOf.map((b) => `\`${String(b.const)}\``).join(", ")}`;
  if (KindGuard.IsString(s)) {
    if (s.pattern) return patternWords(s.pattern);
    if (s.minLength === 1) return `non-empty text${s.maxLength ? `, at most ${s.maxLength} characters` : ""}`;
    return s.maxLength ? `text, at most ${s.maxLength} characters` : "text";
  }
  if (KindGuard.IsInteger(s))
    return s.minimum !== undefined && s.maximum !== undefined
      ? `whole number, ${s.minimum} to ${s.maximum}`
      : "whole number";
  if (KindGuard.IsBoolean(s)) return "true or false";
  if (KindGuard.IsArray(s)) {
    const limits = [s.minItems ? `at least ${s.minItems}` : "", s.uniqueItems ? "no repeats" : ""]
      .filter(Boolean)
      .join(", ");
    const each = KindGuard.IsObject(s.items)
      ? Object.values(TABLES).includes(s.items)
        ? "see its table"
        : "objects, fields below"
      : valueWords(s.items);
    return `list${limits ? ` (${limits})` : ""}: ${each}`;
  }
  if (KindGuard.IsRecord(s)) {
    const [key = ""] = Object.keys(s.patternProperties);
    return key === "^(.*)$" ? "map of any values" : `map: ${patternWords(key)} → a condition`;
  }
  if (KindGuard.IsObject(s)) return "object, fields below";
  return typeWords(s);
}

/**
 * A markdown table. Outside code spans `<` is escaped, or "vault:<tenant>" would vanish as an
 * HTML tag; inside them it must stay as it is. `|` is escaped everywhere (GFM tables).
 */
export function renderTable(table: string): string {
  const cell = (text: string) =>
    text
      .split("`")
      .map((part, i) => (i % 2 ? part : part.replaceAll("<", "&lt;").replaceAll(">", "&gt;")))
      .join("`")
      .replaceAll("|", "\\|");
  const rows = fieldRows().filter((r) => r.table === table);
  return [
    "| field | value | required | meaning |",
    "|---|---|---|---|",
    ...rows.map((r) => `| \`${r.path}\` | ${cell(r.value)} | ${r.required ? "yes" : ""} | ${cell(r.meaning ?? "")} |`),
  ].join("\n");
}

/** The doc with every `<!-- fields:TABLE -->` … `<!-- /fields -->` block regenerated. */
export function updateFieldTables(markdown: string): string {
  return markdown.replace(
    /(<!-- fields:([a-z]+) -->\n)[\s\S]*?(<!-- \/fields -->)/g,
    (_, open: string, table: string, close: string) => `${open}${renderTable(table)}\n${close}`,
  );
}

if (import.meta.main) {
  const file = new URL("../../../docs/desired-state.md", import.meta.url);
  if (process.argv.includes("--write")) await Bun.write(file, updateFieldTables(await Bun.file(file).text()));
  else process.stdout.write(`${Object.keys(TABLES).map(renderTable).join("\n\n")}\n`);
}
