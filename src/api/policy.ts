import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { isId } from "../core/ids.ts";
import { validated } from "../control/service.ts";
import { AppError } from "../errors/index.ts";
import { compilePolicy, decide, type PolicyCache } from "../policy/engine.ts";
import type { EndpointSpec, PolicySpec } from "../resources/specs.ts";
import type { SqliteStorage } from "../store/index.ts";
import { authenticated } from "./http.ts";

const TestBody = t.Object(
  {
    event: t.String({ description: "a stored event of this tenant (evt_…)" }),
    policy: t.Optional(t.Unknown({ description: "a draft policy: replaces the stored one of the same name for this test" })),
    targets: t.Optional(t.Array(t.String(), { description: "endpoints to decide for (default: all of the tenant's)" })),
  },
  { additionalProperties: false },
);

/**
 * POST /v1/tenants/:tenant/policy-test: what the tenant's policies, with an optional draft in
 * place of its namesake, decide for a stored event's dispatch to each target. Nothing is stored.
 */
export function policyRoutes(storage: SqliteStorage, cache: PolicyCache, clock: Clock) {
  return new Elysia({ normalize: false }).use(authenticated(storage.tokens, clock, { tenantParam: true })).post(
    "/tenants/:tenant/policy-test",
    async ({ params, body }) => {
      const tenant = params.tenant;
      const stored = isId(body.event, "evt") ? await storage.events.get(body.event) : null;
      if (!stored || stored.tenant !== tenant) throw new AppError("not_found", `event ${body.event} not found in tenant ${tenant}`);
      const rows = await storage.resources.list({ tenant, kind: "policies", limit: 10_000 });
      const draft = body.policy === undefined ? null : (validated("policies", body.policy) as unknown as PolicySpec);
      const policies = rows
        .filter((r) => !draft || r.name !== draft.name)
        .map((r) => cache.get(r.spec as PolicySpec, { tenant, name: r.name, version: r.resourceVersion }));
      if (draft) policies.push(compilePolicy(draft, { tenant, name: draft.name, version: 0 }));
      const targets = body.targets ?? (await storage.resources.list({ tenant, kind: "endpoints", limit: 10_000 })).map((r) => (r.spec as EndpointSpec).name);
      return {
        event: body.event,
        policies: policies.map((p) => ({ name: p.ref.name, version: p.ref.version, draft: p.ref.version === 0 })),
        decisions: targets.map((target) => {
          const d = decide(policies, stored.envelope, { kind: "dispatch", target });
          return { action: { kind: "dispatch", target }, effect: d.effect, policy: d.policy && { name: d.policy.name, version: d.policy.version }, rule: d.rule, reason: d.reason };
        }),
      };
    },
    { body: TestBody },
  );
}
