import { Elysia } from "elysia";
import { type SecretItem, VaultPage, type VaultView } from "../../web/index.ts";
import { canAccess } from "../api/auth.ts";
import { checkSigningSecret } from "../api/vault.ts";
import { parseDuration } from "../config/index.ts";
import { AppError, isAppError } from "../errors/index.ts";
import type { SecretInfo } from "../vault/vault.ts";
import { sameSecret } from "./auth.ts";
import { redirect } from "./headers.ts";
import { type ConsoleKit, formOf, iso, NAME, sentCsrf, type Visitor } from "./kit.ts";

const DURATION = /^\d+(ms|s|m|h|d)$/;

/** 7776000000 → "90d": the largest whole unit. */
function durationText(ms: number): string {
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/**
 * /console/vault (docs/console.md#vault): a tenant's secrets by name with their versions and
 * rotation due; set and rotate through the vault as /v1/tenants/:tenant/secrets does (the same
 * signing-secret check), as the user. A value is typed once into a password field, sent in the
 * POST's body and never written into a page: every answer is a redirect or a page whose value
 * fields are empty. The vault teaches the log redactor each value before it is stored.
 */
export function vaultRoutes(kit: ConsoleKit) {
  const { storage, signedIn, notFound, refused, html, chromeFor, visibleTenantList } = kit;
  const clock = kit.deps.clock;

  const secretItem = (s: SecretInfo): SecretItem => ({
    name: s.name,
    scope: `vault:${s.tenant}/${s.name}`,
    version: s.version,
    versions: s.versions.map((x) => ({
      version: x.version,
      createdAt: iso(x.createdAt),
      validUntil: x.expiresAt === null ? null : iso(x.expiresAt),
    })),
    format: s.format,
    rotationPeriod: s.rotationPeriodMs === null ? null : durationText(s.rotationPeriodMs),
    rotationDueAt: s.rotationDueAt === null ? null : iso(s.rotationDueAt),
    due: s.rotationDueAt !== null && s.rotationDueAt <= clock.now(),
  });

  /** A tenant the user may see and that exists (as GET /v1/tenants/:tenant/secrets needs). */
  const readable = async (v: Visitor, tenant: string) =>
    NAME.test(tenant) &&
    canAccess(v.principal, tenant, "read") &&
    (await storage.resources.get({ tenant, kind: "tenants", name: tenant })) !== null;

  async function page(
    v: Visitor,
    tenant: string | null,
    extra: Pick<VaultView, "name" | "message"> = { name: "", message: null },
    status = 200,
  ) {
    const tenants = await visibleTenantList(v);
    const secrets = tenant && kit.deps.vault ? await kit.deps.vault.list(tenant) : [];
    return html(
      VaultPage({
        chrome: chromeFor(v, "vault"),
        view: { tenant, tenants, secrets: secrets.map(secretItem), ...extra },
      }),
      status,
    );
  }

  /** CSRF, then the tenant as /v1 checks it (404 unseen, 403 read-only), then the change. */
  const change = (run: (v: Visitor, tenant: string, name: string, form: URLSearchParams) => Promise<unknown>) =>
    signedIn(async (v, { request }) => {
      const form = await formOf(request);
      if (!sameSecret(v.session.csrf, sentCsrf(request, form)))
        return refused(v, "The request carried no valid CSRF token.");
      const tenant = form.get("tenant") ?? "";
      const name = (form.get("name") ?? "").trim();
      if (!(await readable(v, tenant)) || !kit.deps.vault) return notFound(v);
      if (!canAccess(v.principal, tenant, "write")) return refused(v, `You may only read tenant ${tenant}.`);
      try {
        await run(v, tenant, name, form);
      } catch (e) {
        if (isAppError(e) && ["invalid_input", "conflict", "not_found"].includes(e.kind)) {
          const status = e.kind === "invalid_input" ? 422 : e.kind === "conflict" ? 409 : 404;
          return page(v, tenant, { name, message: { text: e.detail, kind: "error" } }, status);
        }
        throw e;
      }
      return redirect(`/console/vault?tenant=${tenant}`, 303);
    });

  const durationOf = (form: URLSearchParams, field: string, label: string): number | null => {
    const value = (form.get(field) ?? "").trim();
    if (!value) return null;
    if (!DURATION.test(value)) throw new AppError("invalid_input", `${label} is a number and a unit: 90d, 12h, 30m.`);
    return parseDuration(value);
  };

  return new Elysia({ name: "console-vault", normalize: false, detail: { hide: true } })
    .get(
      "/console/vault",
      signedIn(async (v, { request }) => {
        const asked = new URL(request.url).searchParams.get("tenant");
        if (asked !== null) {
          if (!(await readable(v, asked))) return notFound(v);
          return page(v, asked);
        }
        return page(v, (await visibleTenantList(v))[0] ?? null);
      }),
    )
    .post(
      "/console/vault/set",
      change(async (v, tenant, name, form) => {
        const value = form.get("value") ?? "";
        const rotationPeriodMs = durationOf(form, "rotation_period", "Rotate every");
        await checkSigningSecret(storage.resources, tenant, name, value);
        await kit.deps.vault!.set(`${tenant}/${name}`, value, { actor: v.principal.name, rotationPeriodMs });
      }),
      { parse: "none" },
    )
    .post(
      "/console/vault/rotate",
      change(async (v, tenant, name, form) => {
        const value = form.get("value") ?? "";
        const graceMs = durationOf(form, "grace", "Old value valid for") ?? undefined;
        await checkSigningSecret(storage.resources, tenant, name, value);
        await kit.deps.vault!.rotate(`${tenant}/${name}`, value, { actor: v.principal.name, graceMs });
      }),
      { parse: "none" },
    );
}
