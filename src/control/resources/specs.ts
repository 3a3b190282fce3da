import { type Static, type TObject, Type } from "@sinclair/typebox";

/**
 * The control plane's resources (docs/desired-state.md): what an operator declares in agentowl.yaml and manages
 * through /v1. One schema per kind; the API validates request bodies with it, the desired-state
 * loader validates YAML with it, and the OpenAPI document is generated from it.
 * docs/desired-state.md documents every field.
 */

/** Names address resources in URLs and YAML: lower-case, digits and dashes. */
export const NAME_PATTERN = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
export const Name = Type.String({
  pattern: NAME_PATTERN,
  description: "lower-case letters, digits and dashes, 1-63 characters",
});

/** `vault:tenant/name`: a secret in the vault, resolved when used, never stored here. */
export const VAULT_REF_PATTERN = "^vault:[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*$";
export const VaultRef = Type.String({
  pattern: VAULT_REF_PATTERN,
  description: "a vault reference, vault:<tenant>/<name>",
});

const Duration = Type.String({ pattern: "^\\d+(ms|s|m|h|d)$", description: "a duration such as 30s, 5m, 24h" });

export const TenantSpec = Type.Object(
  {
    name: Name,
    display_name: Type.Optional(Type.String({ maxLength: 200 })),
    /** docs/console.md#the-inbox: whether the inbox can be read without signing in (default false). */
    inbox: Type.Optional(Type.Object({ public: Type.Optional(Type.Boolean()) }, { additionalProperties: false })),
    /**
     * docs/operations.md#retention: how long this tenant's data is kept, each overriding its setting
     * (event_retention, content_retention, attempt_retention, audit_retention).
     */
    retention: Type.Optional(
      Type.Object(
        {
          events: Type.Optional(
            Type.String({
              pattern: Duration.pattern,
              description: "events, with their deliveries (default: event_retention)",
            }),
          ),
          content: Type.Optional(
            Type.String({
              pattern: Duration.pattern,
              description: "parsed content: bodies, headers, attachments (default: content_retention)",
            }),
          ),
          attempts: Type.Optional(
            Type.String({ pattern: Duration.pattern, description: "delivery attempts (default: attempt_retention)" }),
          ),
          audit: Type.Optional(
            Type.String({
              pattern: Duration.pattern,
              description: "audit entries about it (default: audit_retention)",
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const EndpointSpec = Type.Object(
  {
    name: Name,
    url: Type.String({
      pattern: "^https?://[^\\s]+$",
      maxLength: 2048,
      description: "http(s) URL of the receiver on the LAN",
    }),
    signing_secret: Type.Optional(VaultRef),
    retry: Type.Optional(
      Type.Object(
        {
          max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
          max_age: Type.Optional(Duration),
        },
        { additionalProperties: false },
      ),
    ),
    timeout: Type.Optional(Duration),
    /** guarantee 8 (docs/guarantees.md): endpoints must be on loopback or the LAN unless this says otherwise. */
    allow_public: Type.Optional(Type.Boolean()),
    /** Deliveries to this endpoint at once (default 4): a slow endpoint holds no more workers than this. */
    max_in_flight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  },
  { additionalProperties: false },
);

export const VERIFY_SCHEMES = [
  "standard-webhooks",
  "github-hmac-sha256",
  "hmac-sha256",
  "bearer",
  "none",
  "telnyx-ed25519",
] as const;

export const BindingSpec = Type.Object(
  {
    name: Name,
    type: Type.Union([Type.Literal("email"), Type.Literal("webhook"), Type.Literal("telnyx")]),
    /** email: the agents (local parts) this binding accepts, e.g. hello, support. */
    addresses: Type.Optional(
      Type.Array(Type.String({ pattern: "^[a-z0-9][a-z0-9._-]*$" }), { minItems: 1, uniqueItems: true }),
    ),
    /** telnyx: destination numbers in E.164. */
    numbers: Type.Optional(
      Type.Array(Type.String({ pattern: "^\\+[1-9]\\d{6,14}$" }), { minItems: 1, uniqueItems: true }),
    ),
    verify: Type.Optional(
      Type.Object(
        {
          scheme: Type.Union(VERIFY_SCHEMES.map((s) => Type.Literal(s))),
          secret: Type.Optional(VaultRef),
          public_key: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
          header: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9-]+$" })),
          encoding: Type.Optional(Type.Union([Type.Literal("hex"), Type.Literal("base64")])),
        },
        { additionalProperties: false },
      ),
    ),
    max_body_bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 * 1024 * 1024 })),
    /** webhook and telnyx: requests per minute before 429 (default: the ingress_rate_per_binding setting). */
    rate_per_minute: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    /** webhook: refuse a body that is not JSON with 415. */
    require_json: Type.Optional(Type.Boolean()),
    /** webhook: also take this binding's requests on the plain-HTTP listener (http_plain_listen), for senders that cannot do HTTPS. */
    plain_http: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const Condition = Type.Union([
  Type.String(),
  Type.Number(),
  Type.Boolean(),
  Type.Object(
    {
      equals: Type.Optional(Type.Union([Type.String(), Type.Number(), Type.Boolean()])),
      contains: Type.Optional(Type.String()),
      in: Type.Optional(Type.Array(Type.Union([Type.String(), Type.Number()]))),
      matches: Type.Optional(Type.String()),
    },
    { additionalProperties: false, minProperties: 1 },
  ),
]);

/**
 * Keys are envelope fields (`channel`, `agent`, `data.subject`, `auth.dmarc`, …), values conditions.
 * `additionalProperties: false` makes the key pattern binding: without it a key that does not
 * match (`Channel`) is not checked at all, and a misspelt condition silently never matches.
 */
const Match = Type.Record(Type.String({ pattern: "^[a-z_][a-z0-9_.]*$" }), Condition, { additionalProperties: false });

/** A route's target: an endpoint's name, or `agent:` and an agent's name. */
export const ROUTE_TARGET_PATTERN = "^(agent:)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
const RouteTarget = Type.String({
  pattern: ROUTE_TARGET_PATTERN,
  description: "an endpoint's name, or agent:<name> for a claimed agent",
});

export const RouteSpec = Type.Object(
  {
    name: Name,
    match: Type.Optional(Match),
    /** Endpoint names of the same tenant, or `agent:<name>` for an agent claimed in it (docs/agents.md). */
    to: Type.Array(RouteTarget, { minItems: 1, uniqueItems: true }),
    /** Lower runs first; ties by name. */
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
    default: Type.Optional(
      Type.Boolean({ description: "the tenant's fallback route for events nothing else matches" }),
    ),
  },
  { additionalProperties: false },
);

export const EFFECTS = ["allow", "deny", "require_approval", "quarantine"] as const;
const Effect = Type.Union(EFFECTS.map((e) => Type.Literal(e)));

export const PolicySpec = Type.Object(
  {
    name: Name,
    default: Type.Optional(Effect),
    rules: Type.Array(
      Type.Object(
        {
          name: Type.Optional(Name),
          when: Match,
          effect: Effect,
          reason: Type.Optional(Type.String({ maxLength: 500 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const TOOL_ID_PATTERN = "^[a-z0-9][a-z0-9_.-]{0,62}$";

export const TemplateSpec = Type.Object(
  {
    name: Name,
    instructions: Type.String({ maxLength: 100_000 }),
    model: Type.Object(
      {
        endpoint: Type.String({ pattern: "^https?://[^\\s]+$", maxLength: 2048 }),
        /** The model's name on that server, used unless the runtime asks for another and `allow_override` says it may. */
        default: Type.String({ minLength: 1, maxLength: 200 }),
        allow_override: Type.Optional(Type.Boolean()),
        api_key: Type.Optional(VaultRef),
        /** guarantee 8 (docs/guarantees.md): the model server must be on loopback or the LAN unless this says otherwise. */
        allow_public: Type.Optional(Type.Boolean()),
      },
      { additionalProperties: false },
    ),
    tools: Type.Optional(
      Type.Array(
        Type.Object(
          {
            /** The tool's name as the model sees it; the plugin is `config.plugin`, else the id's first segment (`email`, `http.crm` → `http`). */
            id: Type.String({ pattern: TOOL_ID_PATTERN }),
            provisioning: Type.Union([Type.Literal("pool"), Type.Literal("user")]),
            config: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
          },
          { additionalProperties: false },
        ),
        { maxItems: 64 },
      ),
    ),
    /** `tenant`: only this tenant claims it; `shared`: every tenant may (it runs in the claiming tenant's scope). */
    visibility: Type.Optional(Type.Union([Type.Literal("tenant"), Type.Literal("shared")])),
    /** `required`: never run without a sandbox (a claim is refused where only process isolation is available). */
    sandbox: Type.Optional(Type.Union([Type.Literal("required"), Type.Literal("preferred")])),
    /** The runtime program (argv) instead of the built-in reference runtime; it must speak docs/runtime-protocol.md. */
    command: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { minItems: 1, maxItems: 64 })),
    /** Secrets of this tenant the runtime may ask for over its socket (each lease audited). */
    secrets: Type.Optional(Type.Array(VaultRef, { maxItems: 32, uniqueItems: true })),
  },
  { additionalProperties: false },
);

/** Tenant-scoped kinds, by their plural (the URL segment and the YAML key). */
export const KINDS = {
  endpoints: EndpointSpec,
  bindings: BindingSpec,
  routes: RouteSpec,
  policies: PolicySpec,
  templates: TemplateSpec,
} as const satisfies Record<string, TObject>;

export type Kind = keyof typeof KINDS;
export const KIND_NAMES = Object.keys(KINDS) as Kind[];

export type TenantSpec = Static<typeof TenantSpec>;
export type EndpointSpec = Static<typeof EndpointSpec>;
export type BindingSpec = Static<typeof BindingSpec>;
export type RouteSpec = Static<typeof RouteSpec>;
export type PolicySpec = Static<typeof PolicySpec>;
export type TemplateSpec = Static<typeof TemplateSpec>;
export type SpecOf<K extends Kind> = Static<(typeof KINDS)[K]>;

/**
 * The owner of global policies (docs/desired-state.md#policies): they decide for every tenant, before the tenant's own.
 * Stored like a tenant's resources under this reserved owner, which no tenant name can equal.
 */
export const GLOBAL = "*";

/** The singular, for messages ("endpoint crm"). */
export const SINGULAR: Record<Kind | "tenants", string> = {
  tenants: "tenant",
  endpoints: "endpoint",
  bindings: "binding",
  routes: "route",
  policies: "policy",
  templates: "template",
};
