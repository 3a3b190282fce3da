import { Type } from "@sinclair/typebox";
import {
  BindingSpec,
  type PolicySpec as Policy,
  EndpointSpec,
  PolicySpec,
  RouteSpec,
  TemplateSpec,
  TenantSpec,
} from "../resources/specs.ts";
import type { TenantState } from "../resources/validate.ts";

/**
 * The desired-state file (docs/desired-state.md, docs/desired-state.md), as one schema made of the resource
 * schemas: validating it checks every resource, and every problem's pointer is a path in the file.
 */

export const API_VERSION = "agentowl/v1";

/** A tenant as written in the file: its own fields, and its resources by kind. */
export const TenantDocument = Type.Object(
  {
    ...TenantSpec.properties,
    endpoints: Type.Optional(Type.Array(EndpointSpec)),
    bindings: Type.Optional(Type.Array(BindingSpec)),
    routes: Type.Optional(Type.Array(RouteSpec)),
    policies: Type.Optional(Type.Array(PolicySpec)),
    templates: Type.Optional(Type.Array(TemplateSpec)),
  },
  { additionalProperties: false },
);

export const DesiredFile = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION),
    tenants: Type.Array(TenantDocument),
    policies: Type.Optional(
      Type.Array(PolicySpec, { description: "global policies: they decide for every tenant's events" }),
    ),
  },
  { additionalProperties: false },
);

/** Every declared tenant with all of its resources: the whole truth for what it declares. */
export interface DesiredState {
  tenants: TenantState[];
  /** The global policies (docs/desired-state.md#policies); absent is none. Only an admin may declare them. */
  policies?: Policy[];
}

/** What the database holds now, in the same shape, so that plan() compares like with like. */
export type Snapshot = DesiredState;
