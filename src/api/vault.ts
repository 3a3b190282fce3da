import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import { parseDuration } from "../config/index.ts";
import type { ResourceStore, TokenStore } from "../store/index.ts";
import { isSigningSecret, type SecretInfo, SIGNING_SECRET_FORM, type Vault } from "../vault/vault.ts";
import { requireAdmin } from "./auth.ts";
import { authenticated } from "./http.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
/** Metadata only: the API never returns a secret's value. */
const present = (s: SecretInfo) => ({
  tenant: s.tenant,
  name: s.name,
  version: s.version,
  versions: s.versions.map((v) => ({
    version: v.version,
    created_at: iso(v.createdAt),
    valid_until: iso(v.expiresAt),
  })),
  rotation_period_ms: s.rotationPeriodMs,
  rotation_due_at: iso(s.rotationDueAt),
  // What the value looks like, never the value: whsec (a Standard Webhooks secret), opaque, or null
  // (a row whose shape the vault never noted).
  format: s.format,
});

const Duration = t.String({ pattern: "^\\d+(ms|s|m|h|d)$" });
const SetBody = t.Object(
  { value: t.String({ minLength: 1 }), rotation_period: t.Optional(Duration) },
  { additionalProperties: false },
);
const RotateBody = t.Object(
  { value: t.String({ minLength: 1 }), grace: t.Optional(Duration) },
  { additionalProperties: false },
);

/**
 * A value for a secret an endpoint signs deliveries with must be a Standard Webhooks secret
 * (the API and the console's vault page both check it before setting or rotating).
 */
export async function checkSigningSecret(resources: ResourceStore, tenant: string, name: string, value: string) {
  if (isSigningSecret(value)) return;
  const ref = `vault:${tenant}/${name}`;
  const endpoints = await resources.list({ tenant, kind: "endpoints", limit: 10_000 });
  const signer = endpoints.find((e) => (e.spec as { signing_secret?: string }).signing_secret === ref);
  if (signer) {
    throw new AppError(
      "invalid_input",
      `${tenant}/${name} signs the deliveries of endpoint ${tenant}/${signer.name}: it must be ${SIGNING_SECRET_FORM}`,
      {
        errors: [{ field: "/value", message: `must be ${SIGNING_SECRET_FORM} (a Standard Webhooks secret)` }],
      },
    );
  }
}

/**
 * /v1/tenants/:tenant/secrets: set (PUT, write-only), rotate, and metadata. Tenant access is
 * checked before the body is read, like every tenant route.
 */
export function vaultRoutes(vault: Vault, resources: ResourceStore, tokens: TokenStore, clock: Clock) {
  const checkSigning = (tenant: string, name: string, value: string) =>
    checkSigningSecret(resources, tenant, name, value);
  return (
    new Elysia({ normalize: false })
      .use(authenticated(tokens, clock, { tenantParam: true }))
      // Reading needs a tenant that exists. Setting does not: a new tenant's secrets are set before
      // the file that creates the tenant is applied, since apply refuses missing secrets.
      .derive({ as: "local" }, async ({ params, request }) => {
        const tenant = (params as Record<string, string | undefined> | undefined)?.tenant;
        if (
          request.method === "GET" &&
          tenant !== undefined &&
          !(await resources.get({ tenant, kind: "tenants", name: tenant }))
        )
          throw new AppError("not_found", "not found");
        return {};
      })
      .get("/tenants/:tenant/secrets", async ({ params }) => ({
        items: (await vault.list(params.tenant)).map(present),
        next_cursor: null,
      }))
      .get("/tenants/:tenant/secrets/:name", async ({ params }) => {
        const info = await vault.info(`${params.tenant}/${params.name}`).catch(() => null);
        if (!info) throw new AppError("not_found", "not found");
        return present(info);
      })
      .put(
        "/tenants/:tenant/secrets/:name",
        async ({ principal, params, body, set }) => {
          await checkSigning(params.tenant, params.name, body.value);
          const info = await vault.set(`${params.tenant}/${params.name}`, body.value, {
            actor: `token:${principal.tokenId}`,
            rotationPeriodMs: body.rotation_period ? parseDuration(body.rotation_period) : null,
          });
          set.status = 201;
          return present(info);
        },
        { body: SetBody, parse: "json" },
      )
      .post(
        "/vault/rotate-master",
        async ({ principal }) => {
          requireAdmin(principal);
          const r = await vault.rotateMaster({ actor: `token:${principal.tokenId}` });
          return { rewrapped: r.rewrapped, master_key_id: r.masterKeyId };
        },
        { body: t.Object({}, { additionalProperties: false }), parse: "json" },
      )
      .post(
        "/tenants/:tenant/secrets/:name/rotate",
        async ({ principal, params, body }) => {
          await checkSigning(params.tenant, params.name, body.value);
          return present(
            await vault.rotate(`${params.tenant}/${params.name}`, body.value, {
              actor: `token:${principal.tokenId}`,
              graceMs: body.grace ? parseDuration(body.grace)! : undefined,
            }),
          );
        },
        { body: RotateBody, parse: "json" },
      )
  );
}
