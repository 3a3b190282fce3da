import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { isId } from "../core/ids.ts";
import { validated } from "../control/service.ts";
import { AppError } from "../errors/index.ts";
import { decide, type PolicyCache } from "../policy/engine.ts";
import { policiesFor } from "../policy/load.ts";
import { type EndpointSpec, GLOBAL, type PolicySpec } from "../control/resources/specs.ts";
import { type Principal, requireAdmin } from "./auth.ts";
import type { Storage } from "../store/index.ts";
import { authenticated } from "./http.ts";

const TestBody = t.Object(
  {
    event: t.String({ description: "a stored event of this tenant (evt_…)" }),
    policy: t.Optional(
      t.Unknown({ description: "a draft policy: replaces the stored one of the same name for this test" }),
    ),
    global: t.Optional(t.Boolean({ description: "the draft is a global policy (only an admin may test one)" })),
    targets: t.Optional(t.Array(t.String(), { description: "endpoints to decide for (default: all of the tenant's)" })),
  },
  { additionalProperties: false },
);

/** What a policy test asks: a stored event, an optional draft policy, the targets (default: every endpoint). */
export interface PolicyTestInput {
  event: string;
  policy?: unknown;
  global?: boolean;
  targets?: string[];
}

/**
 * What the global policies and the tenant's, with an optional draft in place of its namesake,
 * decide for a stored event's dispatch to each target. Nothing is stored. The API's policy-test
 * route and the console's dry run both answer with this.
 */
export async function policyTest(
  storage: Storage,
  cache: PolicyCache,
  principal: Principal,
  tenant: string,
  body: PolicyTestInput,
) {
  const stored = isId(body.event, "evt") ? await storage.events.get(body.event) : null;
  if (!stored || stored.tenant !== tenant)
    throw new AppError("not_found", `event ${body.event} not found in tenant ${tenant}`);
  if (body.global) requireAdmin(principal);
  const draft =
    body.policy === undefined
      ? undefined
      : { spec: validated("policies", body.policy) as unknown as PolicySpec, global: body.global === true };
  const policies = await policiesFor(storage.resources, cache, tenant, draft);
  const targets =
    body.targets ??
    (await storage.resources.list({ tenant, kind: "endpoints", limit: 10_000 })).map(
      (r) => (r.spec as EndpointSpec).name,
    );
  return {
    event: body.event,
    policies: policies.map((p) => ({
      name: p.ref.name,
      global: p.ref.tenant === GLOBAL,
      version: p.ref.version,
      draft: p.ref.version === 0,
    })),
    decisions: targets.map((target) => {
      const d = decide(policies, stored.envelope, { kind: "dispatch", target });
      return {
        action: { kind: "dispatch" as const, target },
        effect: d.effect,
        policy: d.policy && { name: d.policy.name, global: d.policy.tenant === GLOBAL, version: d.policy.version },
        rule: d.rule,
        ...(d.ruleName ? { rule_name: d.ruleName } : {}),
        reason: d.reason,
      };
    }),
  };
}

/** POST /v1/tenants/:tenant/policy-test (policyTest). */
export function policyRoutes(storage: Storage, cache: PolicyCache, clock: Clock) {
  return new Elysia({ normalize: false })
    .use(authenticated(storage.tokens, clock, { tenantParam: true }))
    .post(
      "/tenants/:tenant/policy-test",
      ({ principal, params, body }) => policyTest(storage, cache, principal, params.tenant, body),
      { body: TestBody, parse: "json" },
    );
}
