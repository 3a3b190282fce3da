import { Elysia } from "elysia";
import {
  ConfigDeletePage,
  ConfigFormPage,
  type ConfigFormView,
  ConfigKindPage,
  ConfigNoticePage,
  type ConfigRow,
  type ConfigSection,
  ConfigTenantPage,
  ConfigTenantsPage,
  type DiffRow,
  PolicyHistoryPage,
  PolicyTestPage,
  type PolicyTestView,
} from "../../web/index.ts";
import { canAccess, isAdmin, visibleTenants } from "../api/auth.ts";
import { BODY_LIMITS } from "../api/http.ts";
import { policyTest } from "../api/policy.ts";
import { signingSecretCheck } from "../api/v1.ts";
import { diffFields, renderDesired } from "../control/desired/index.ts";
import type { BindingSpec, EndpointSpec, PolicySpec, RouteSpec, TemplateSpec } from "../control/resources/specs.ts";
import { validateSpec } from "../control/resources/validate.ts";
import { ControlPlane } from "../control/service.ts";
import { readTenantState } from "../control/state.ts";
import { AppError, isAppError } from "../errors/index.ts";
import { PolicyCache } from "../policy/engine.ts";
import { readBody } from "../server/body.ts";
import type { ResourceKey, ResourceRecord } from "../store/index.ts";
import { sameSecret } from "./auth.ts";
import {
  type ConfigKind,
  CONSOLE_KINDS,
  fieldViews,
  fieldsOf,
  formFromSpec,
  isConsoleKind,
  placeErrors,
  singular,
  specFromForm,
} from "./config-form.ts";
import { SECURITY_HEADERS, redirect } from "./headers.ts";
import { type ConsoleKit, iso, NAME, PAGE, sentCsrf, type Visitor } from "./kit.ts";

type Params = { request: Request; params: Record<string, string> };

/** Resources listed on a tenant's page per kind; the rest page by page on the kind's own page. */
const SECTION_ROWS = 10;
const TITLES: Record<(typeof CONSOLE_KINDS)[number], string> = {
  bindings: "Bindings",
  endpoints: "Endpoints",
  routes: "Routes",
  policies: "Policies",
  templates: "Templates",
};

/** The fields that tell resources of a kind apart in a list. */
function summary(kind: ConfigKind, spec: unknown): string {
  switch (kind) {
    case "bindings": {
      const b = spec as BindingSpec;
      const what = b.addresses?.join(", ") ?? b.numbers?.join(", ") ?? "";
      return [b.type, what, b.verify ? `verify ${b.verify.scheme}` : ""].filter(Boolean).join(" · ");
    }
    case "endpoints":
      return (spec as EndpointSpec).url;
    case "routes": {
      const r = spec as RouteSpec;
      const match = Object.keys(r.match ?? {});
      return [
        `to ${r.to.join(", ")}`,
        match.length ? `match ${match.join(", ")}` : "matches everything",
        r.priority !== undefined ? `priority ${r.priority}` : "",
        r.default ? "default" : "",
      ]
        .filter(Boolean)
        .join(" · ");
    }
    case "policies": {
      const p = spec as PolicySpec;
      return `${p.rules.length} rule${p.rules.length === 1 ? "" : "s"} · default ${p.default ?? "allow"}`;
    }
    case "templates":
      return `model ${(spec as TemplateSpec).model.default}`;
    default:
      return "";
  }
}

const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));
const diffRows = (from: unknown, to: unknown): DiffRow[] =>
  diffFields(from, to).map((c) => ({ path: c.path, from: json(c.from), to: json(c.to) }));

/** A form body: larger than the console's other forms, as large as the API takes (urlencoded: up to 3×). */
async function configForm(request: Request, kind: ConfigKind): Promise<URLSearchParams> {
  const limit = 3 * (kind === "templates" ? BODY_LIMITS.template : BODY_LIMITS.json);
  const bytes = await readBody(request, limit);
  const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") return new URLSearchParams();
  return new URLSearchParams(new TextDecoder().decode(bytes));
}

function versionOf(form: URLSearchParams): number {
  const n = Number(form.get("resource_version"));
  if (!Number.isInteger(n) || n < 1)
    throw new AppError("invalid_input", "the form carries no resource_version: open it again");
  return n;
}

/** What a form edits: a tenant itself, or one of its resources (name null: a new one). */
interface Target {
  tenant: string;
  kind: ConfigKind;
  name: string | null;
}

const keyOf = (t: Target, name: string): ResourceKey =>
  t.kind === "tenants" ? { tenant: name, kind: "tenants", name } : { tenant: t.tenant, kind: t.kind, name };

function formAction(t: Target): string {
  if (t.kind === "tenants") return t.name === null ? "/console/config/_new" : `/console/config/${t.tenant}/settings`;
  return `/console/config/${t.tenant}/${t.kind}/${t.name ?? "_new"}`;
}

/**
 * The configuration pages (docs/console.md#configuration): a tenant's bindings, endpoints, routes,
 * policies and templates, listed and edited in forms generated from the API's schemas. Every write
 * is the API's (ControlPlane, the same checks, If-Match from the version the form was opened with),
 * audited as `user:<name>`.
 */
export function configRoutes(kit: ConsoleKit) {
  const { storage, chromeFor, html, notFound, refused, signedIn, deps } = kit;
  const control = new ControlPlane(storage.resources, storage.audit);
  const cache = new PolicyCache();
  const chrome = (v: Visitor) => chromeFor(v, "config");
  const csrfOk = (v: Visitor, request: Request, form: URLSearchParams) =>
    sameSecret(v.session.csrf, sentCsrf(request, form));

  /** A tenant the visitor may see, that exists; null is a 404 (never a 403 across tenants). */
  async function tenantOf(v: Visitor, tenant: string | undefined): Promise<ResourceRecord | null> {
    if (!tenant || !NAME.test(tenant) || !canAccess(v.principal, tenant, "read")) return null;
    return storage.resources.get({ tenant, kind: "tenants", name: tenant });
  }

  /** The API's refusals as pages: not found is a 404, forbidden a 403. */
  const asPage =
    <C extends Params>(handler: (v: Visitor, c: C) => Promise<Response>) =>
    (v: Visitor, c: C) =>
      handler(v, c).catch((e) => {
        if (isAppError(e) && e.kind === "not_found") return notFound(v);
        if (isAppError(e) && e.kind === "forbidden") return refused(v, e.detail);
        throw e;
      });
  const page = <C extends Params>(handler: (v: Visitor, c: C) => Promise<Response>) => signedIn(asPage(handler));

  function writable(v: Visitor, tenant: string): void {
    if (!canAccess(v.principal, tenant, "write")) throw new AppError("forbidden", `you may only read tenant ${tenant}`);
  }

  function formPage(
    v: Visitor,
    t: Target,
    form: URLSearchParams,
    opts: {
      status?: number;
      byField?: Map<string, string[]>;
      general?: string[];
      version: number | null;
      conflict?: ConfigFormView["conflict"];
      note?: string | null;
    },
  ) {
    const editing = t.name !== null;
    const what = t.kind === "tenants" ? "tenant" : singular(t.kind);
    const tenantPage = `/console/config/${t.tenant}`;
    const policyBase = `${tenantPage}/policies/${t.name}`;
    return html(
      ConfigFormPage({
        chrome: chrome(v),
        view: {
          title: editing
            ? t.kind === "tenants"
              ? `Tenant ${t.tenant}`
              : `${what[0]!.toUpperCase()}${what.slice(1)} ${t.tenant}/${t.name}`
            : t.kind === "tenants"
              ? "New tenant"
              : `New ${what} in ${t.tenant}`,
          action: formAction(t),
          csrf: v.session.csrf,
          fields: fieldViews(t.kind, form, editing, opts.byField),
          general: opts.general ?? [],
          note: opts.note ?? null,
          resourceVersion: opts.version,
          conflict: opts.conflict ?? null,
          cancel: t.kind === "tenants" && !editing ? "/console/config" : tenantPage,
          deleteAction: editing && t.kind !== "tenants" ? `${formAction(t)}/delete` : null,
          extra:
            editing && t.kind === "policies"
              ? [
                  { href: `${policyBase}/history`, label: "Version history" },
                  { href: `${policyBase}/test`, label: "Dry run against a stored event" },
                ]
              : [],
          submitLabel: editing ? "Save" : `Create ${what}`,
        },
      }),
      opts.status ?? 200,
    );
  }

  /** GET of a form: a new resource's (empty) or a stored one's, with the version it was opened at. */
  async function openForm(v: Visitor, t: Target, request: Request): Promise<Response> {
    if (t.name === null) return formPage(v, t, new URLSearchParams(), { version: null });
    const record = await storage.resources.get(keyOf(t, t.name));
    if (!record) return notFound(v);
    const saved = new URL(request.url).searchParams.get("saved");
    return formPage(v, t, formFromSpec(t.kind, record.spec, true), {
      version: record.resourceVersion,
      note: saved ? `Saved as resource_version ${record.resourceVersion}.` : null,
    });
  }

  /**
   * POST of a form: the spec it stands for, written through the API's write path. A 422 shows the
   * form again with each message beside its field; a 412 (someone saved in between) shows what
   * differs and lets the user reload or overwrite.
   */
  async function submit(v: Visitor, t: Target, request: Request): Promise<Response> {
    const form = await configForm(request, t.kind);
    if (!csrfOk(v, request, form)) return refused(v, "The request carried no valid CSRF token.");
    const editing = t.name !== null;
    const version = editing ? versionOf(form) : null;
    const { spec, local } = specFromForm(t.kind, form, t.name ?? undefined);
    const name = t.name ?? (typeof spec.name === "string" ? spec.name : "");
    const key = keyOf(t, name);
    const prefix = `${key.tenant}/${key.kind}/${name}`;
    const again = (status: number, errors: { field: string; message: string }[], general: string[] = []) => {
      const placed = placeErrors(fieldsOf(t.kind, editing), errors, prefix);
      return formPage(v, t, form, {
        status,
        byField: placed.byField,
        general: [...general, ...placed.general],
        version,
      });
    };
    try {
      if (local.length) {
        // The areas that did not parse are told so; the validator's other messages with them.
        const at = new Set(local.map((l) => l.field));
        const others = validateSpec(t.kind, spec)
          .map((p) => ({ field: p.pointer || "/", message: p.message }))
          .filter((e) => ![...at].some((f) => e.field.startsWith(f)));
        return again(422, [...local, ...others]);
      }
      if (deps.vault) await signingSecretCheck(deps.vault, key, spec);
      const { record } = await control.put(key, spec, {
        mode: editing ? "update" : "create",
        pre: version === null ? undefined : { ifMatch: [version] },
        actor: v.principal.name,
      });
      const at = t.kind === "tenants" ? `/console/config/${record.name}` : `${formAction({ ...t, name: record.name })}`;
      return redirect(`${at}${t.kind === "tenants" ? "" : "?saved=1"}`, 303);
    } catch (e) {
      if (!isAppError(e)) throw e;
      if (e.kind === "invalid_input") return again(422, e.errors ?? [], e.errors?.length ? [] : [e.detail]);
      if (e.kind === "conflict") return again(409, [], [e.detail]);
      if (e.kind === "precondition_failed" && editing) {
        const stored = await storage.resources.get(key);
        if (!stored) return notFound(v);
        return formPage(v, t, form, {
          status: 412,
          version: stored.resourceVersion,
          conflict: {
            storedVersion: stored.resourceVersion,
            diff: diffRows(stored.spec, spec),
            reload: formAction(t),
          },
        });
      }
      throw e;
    }
  }

  async function section(tenant: string, kind: (typeof CONSOLE_KINDS)[number], after: string | undefined, n: number) {
    const rows = await storage.resources.list({ tenant, kind, after, limit: n + 1 });
    const shown = rows.slice(0, n);
    const base = `/console/config/${tenant}/${kind}`;
    return {
      kind,
      title: TITLES[kind],
      rows: shown.map(
        (r): ConfigRow => ({
          name: r.name,
          href: `${base}/${r.name}`,
          summary: summary(kind, r.spec),
          version: r.resourceVersion,
        }),
      ),
      more: rows.length > n ? `${base}?after=${shown.at(-1)!.name}` : null,
      newHref: `${base}/_new`,
    } satisfies ConfigSection;
  }

  /** The kind and name of a resource URL, or null (a 404). */
  const resourceTarget = (tenant: string, params: Record<string, string>): Target | null =>
    isConsoleKind(params.kind ?? "") && NAME.test(params.name ?? "")
      ? { tenant, kind: params.kind as ConfigKind, name: params.name! }
      : null;

  return new Elysia({ name: "console-config", normalize: false, detail: { hide: true } })
    .get(
      "/console/config",
      page(async (v, { request }: Params) => {
        const after = new URL(request.url).searchParams.get("after") ?? undefined;
        if (after !== undefined && !NAME.test(after)) throw new AppError("invalid_input", "after must be a name");
        const visible = visibleTenants(v.principal);
        const rows = await storage.resources.list({
          kind: "tenants",
          after,
          limit: PAGE + 1,
          ...(visible === "all" ? {} : { tenants: visible }),
        });
        const shown = rows.slice(0, PAGE);
        return html(
          ConfigTenantsPage({
            chrome: chrome(v),
            view: {
              tenants: shown.map((r) => ({
                name: r.name,
                displayName: (r.spec as { display_name?: string }).display_name ?? "",
                version: r.resourceVersion,
              })),
              older: rows.length > PAGE ? `/console/config?after=${shown.at(-1)!.name}` : null,
              canCreate: isAdmin(v.principal),
            },
          }),
        );
      }),
    )
    .get(
      "/console/config/_new",
      page(async (v, { request }: Params) => {
        if (!isAdmin(v.principal)) return refused(v, "Only an admin creates tenants.");
        return openForm(v, { tenant: "", kind: "tenants", name: null }, request);
      }),
    )
    .post(
      "/console/config/_new",
      page(async (v, { request }: Params) => {
        if (!isAdmin(v.principal)) return refused(v, "Only an admin creates tenants.");
        return submit(v, { tenant: "", kind: "tenants", name: null }, request);
      }),
      { parse: "none" },
    )
    .get(
      "/console/config/:tenant",
      page(async (v, { params }: Params) => {
        const record = await tenantOf(v, params.tenant);
        if (!record) return notFound(v);
        const tenant = record.name;
        const sections = await Promise.all(CONSOLE_KINDS.map((k) => section(tenant, k, undefined, SECTION_ROWS)));
        return html(
          ConfigTenantPage({
            chrome: chrome(v),
            view: {
              tenant,
              displayName: (record.spec as { display_name?: string }).display_name ?? "",
              version: record.resourceVersion,
              sections,
            },
          }),
        );
      }),
    )
    .get(
      "/console/config/:tenant/desired.yaml",
      page(async (v, { params }: Params) => {
        if (!(await tenantOf(v, params.tenant))) return notFound(v);
        const state = await readTenantState(storage.resources, params.tenant!);
        if (!state) return notFound(v);
        return new Response(renderDesired({ tenants: [state] }), {
          headers: {
            ...SECURITY_HEADERS,
            "cache-control": "no-store",
            "content-type": "application/yaml; charset=utf-8",
            "content-disposition": `attachment; filename="${params.tenant}.yaml"`,
          },
        });
      }),
    )
    .get(
      "/console/config/:tenant/settings",
      page(async (v, { params, request }: Params) => {
        if (!(await tenantOf(v, params.tenant))) return notFound(v);
        return openForm(v, { tenant: params.tenant!, kind: "tenants", name: params.tenant! }, request);
      }),
    )
    .post(
      "/console/config/:tenant/settings",
      page(async (v, { params, request }: Params) => {
        if (!(await tenantOf(v, params.tenant))) return notFound(v);
        writable(v, params.tenant!);
        return submit(v, { tenant: params.tenant!, kind: "tenants", name: params.tenant! }, request);
      }),
      { parse: "none" },
    )
    .get(
      "/console/config/:tenant/:kind",
      page(async (v, { params, request }: Params) => {
        const kind = params.kind ?? "";
        if (!isConsoleKind(kind) || !(await tenantOf(v, params.tenant))) return notFound(v);
        const after = new URL(request.url).searchParams.get("after") ?? undefined;
        if (after !== undefined && !NAME.test(after)) throw new AppError("invalid_input", "after must be a name");
        return html(
          ConfigKindPage({
            chrome: chrome(v),
            tenant: params.tenant!,
            section: await section(params.tenant!, kind, after, PAGE),
            first: after ? `/console/config/${params.tenant}/${kind}` : null,
          }),
        );
      }),
    )
    .get(
      "/console/config/:tenant/:kind/_new",
      page(async (v, { params, request }: Params) => {
        const kind = params.kind ?? "";
        if (!isConsoleKind(kind) || !(await tenantOf(v, params.tenant))) return notFound(v);
        return openForm(v, { tenant: params.tenant!, kind, name: null }, request);
      }),
    )
    .post(
      "/console/config/:tenant/:kind/_new",
      page(async (v, { params, request }: Params) => {
        const kind = params.kind ?? "";
        if (!isConsoleKind(kind) || !(await tenantOf(v, params.tenant))) return notFound(v);
        writable(v, params.tenant!);
        return submit(v, { tenant: params.tenant!, kind, name: null }, request);
      }),
      { parse: "none" },
    )
    .get(
      "/console/config/:tenant/:kind/:name",
      page(async (v, { params, request }: Params) => {
        const t = resourceTarget(params.tenant!, params);
        if (!t || !(await tenantOf(v, params.tenant))) return notFound(v);
        return openForm(v, t, request);
      }),
    )
    .post(
      "/console/config/:tenant/:kind/:name",
      page(async (v, { params, request }: Params) => {
        const t = resourceTarget(params.tenant!, params);
        if (!t || !(await tenantOf(v, params.tenant))) return notFound(v);
        writable(v, t.tenant);
        return submit(v, t, request);
      }),
      { parse: "none" },
    )
    .post(
      "/console/config/:tenant/:kind/:name/delete",
      page(async (v, { params, request }: Params) => {
        const t = resourceTarget(params.tenant!, params);
        if (!t || !(await tenantOf(v, params.tenant))) return notFound(v);
        const form = await configForm(request, "tenants");
        if (!csrfOk(v, request, form)) return refused(v, "The request carried no valid CSRF token.");
        writable(v, t.tenant);
        const version = versionOf(form);
        const key = keyOf(t, t.name!);
        const what = `${singular(t.kind)} ${t.tenant}/${t.name}`;
        const back = { href: formAction(t), label: `Back to ${what}` };
        if (form.get("confirm") !== "yes") {
          if (!(await storage.resources.get(key))) return notFound(v);
          return html(
            ConfigDeletePage({
              chrome: chrome(v),
              view: {
                what,
                action: `${formAction(t)}/delete`,
                csrf: v.session.csrf,
                resourceVersion: version,
                cancel: back.href,
              },
            }),
          );
        }
        try {
          await control.delete(key, { pre: { ifMatch: [version] }, actor: v.principal.name });
        } catch (e) {
          if (isAppError(e) && e.kind === "conflict")
            return html(
              ConfigNoticePage({
                chrome: chrome(v),
                title: "Not deleted: still in use",
                text: `${what} is not deleted: other resources still refer to it. Change them first.`,
                details: (e.errors ?? []).map((x) => `${x.field}: ${x.message}`),
                back,
              }),
              409,
            );
          if (isAppError(e) && e.kind === "precondition_failed")
            return html(
              ConfigNoticePage({
                chrome: chrome(v),
                title: "Changed since you opened it",
                text: `${what} was changed after you opened it, so it was not deleted. Look at it again first.`,
                back,
              }),
              412,
            );
          throw e;
        }
        return redirect(`/console/config/${t.tenant}`, 303);
      }),
      { parse: "none" },
    )
    .get(
      "/console/config/:tenant/policies/:name/history",
      page(async (v, { params, request }: Params) => {
        const t = resourceTarget(params.tenant!, { kind: "policies", name: params.name! });
        if (!t || !(await tenantOf(v, params.tenant))) return notFound(v);
        const versions = await storage.resources.history(keyOf(t, t.name!));
        if (!versions.length) return notFound(v);
        const q = new URL(request.url).searchParams;
        let diff = null;
        let message: string | null = null;
        if (q.has("from") || q.has("to")) {
          const from = versions.find((x) => String(x.resourceVersion) === q.get("from"));
          const to = versions.find((x) => String(x.resourceVersion) === q.get("to"));
          if (!from || !to) message = "Choose two versions this policy has.";
          else
            diff = {
              from: from.resourceVersion,
              to: to.resourceVersion,
              rows: diffRows(from.spec ?? {}, to.spec ?? {}),
            };
        }
        return html(
          PolicyHistoryPage({
            chrome: chrome(v),
            view: {
              tenant: t.tenant,
              name: t.name!,
              versions: versions.map((x) => ({
                version: x.resourceVersion,
                op: x.op,
                actor: x.actor,
                at: iso(x.changedAt),
              })),
              diff,
              message,
            },
          }),
        );
      }),
    )
    .get(
      "/console/config/:tenant/policies/:name/test",
      page(async (v, { params, request }: Params) => {
        const t = resourceTarget(params.tenant!, { kind: "policies", name: params.name! });
        if (!t || !(await tenantOf(v, params.tenant))) return notFound(v);
        const history = await storage.resources.history(keyOf(t, t.name!));
        if (!history.length) return notFound(v);
        const q = new URL(request.url).searchParams;
        const event = (q.get("event") ?? "").trim();
        const wanted = q.get("version") ? Number(q.get("version")) : null;
        const recent = await storage.events.list({ tenants: [t.tenant], limit: 20 });
        const view: PolicyTestView = {
          tenant: t.tenant,
          name: t.name!,
          events: recent.map((r) => ({ id: r.envelope.id, label: `${r.envelope.type} ${r.envelope.received_at}` })),
          versions: history.filter((h) => h.spec).map((h) => h.resourceVersion),
          chosen: { event, version: wanted },
          message: null,
          result: null,
        };
        if (event) {
          const old = wanted === null ? undefined : history.find((h) => h.resourceVersion === wanted);
          try {
            if (wanted !== null && !old?.spec)
              throw new AppError("invalid_input", `policy ${t.name} has no version ${wanted}`);
            // An older version is tested as a draft in place of the stored one, as `policy test --file` does.
            const r = await policyTest(storage, cache, v.principal, t.tenant, {
              event,
              ...(old ? { policy: old.spec } : {}),
            });
            view.result = {
              policies: r.policies,
              decisions: r.decisions.map((d) => ({
                target: d.action.target,
                effect: d.effect,
                policy: d.policy ? `${d.policy.global ? "global " : ""}${d.policy.name} v${d.policy.version}` : null,
                rule:
                  d.rule === null
                    ? d.policy
                      ? "the policy's default"
                      : "none"
                    : `rule ${d.rule}${d.rule_name ? ` (${d.rule_name})` : ""}`,
                reason: d.reason,
              })),
            };
          } catch (e) {
            if (!isAppError(e) || (e.kind !== "not_found" && e.kind !== "invalid_input")) throw e;
            view.message = e.detail;
          }
        }
        return html(PolicyTestPage({ chrome: chrome(v), view }));
      }),
    );
}
