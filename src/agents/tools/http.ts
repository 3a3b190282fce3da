import type { EndpointSpec } from "../../control/resources/specs.ts";
import { type Clock, systemClock } from "../../core/clock.ts";
import { parseDuration } from "../../config/index.ts";
import type { Resolve } from "../../dispatch/egress.ts";
import { postJson, signStandardWebhook } from "../../dispatch/post.ts";
import { AppError } from "../../errors/index.ts";
import type { Provisioned, ToolCallContext, ToolContext, ToolPlugin, ToolRecord } from "../types.ts";

/**
 * The `http` tool (docs/agents.md#tools): a call POSTs JSON to a named endpoint of the tenant,
 * signed as deliveries are (Standard Webhooks, with the endpoint's signing secret leased for
 * exactly this call; the webhook-id is the call's id), through the egress guard (the endpoint's
 * `allow_public` decides as for deliveries), never following a redirect.
 */

export interface HttpDeps {
  /** An endpoint's spec as configured now. */
  endpoint(tenant: string, name: string): Promise<EndpointSpec | undefined>;
  clock?: Clock;
  resolve?: Resolve;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 5_000;
/** What of the answer the call's result keeps. */
const ANSWER_BYTES = 64 * 1024;

export function httpPlugin(deps: HttpDeps): ToolPlugin {
  const clock = deps.clock ?? systemClock;
  const endpointOf = async (tenant: string, name: unknown): Promise<EndpointSpec> => {
    if (typeof name !== "string" || !name)
      throw new AppError(
        "invalid_input",
        "an http tool needs config.endpoint: the name of one of the tenant's endpoints",
      );
    const spec = await deps.endpoint(tenant, name);
    if (!spec) throw new AppError("invalid_input", `no endpoint ${name} in tenant ${tenant}`);
    return spec;
  };
  const provision = async (ctx: ToolContext): Promise<Provisioned> => {
    const spec = await endpointOf(ctx.tenant, ctx.config.endpoint);
    return { resourceId: `${ctx.tenant}/${spec.name}`, config: { endpoint: spec.name } };
  };
  const nameOf = (r: ToolRecord) => String(r.config.endpoint ?? "");
  return {
    id: "http",
    description: "POST JSON to one of the tenant's endpoints, signed as deliveries are (Standard Webhooks).",
    provisioning: ["pool"],
    parameters: {
      type: "object",
      properties: { body: { type: "object", description: "the JSON body to send" } },
      required: ["body"],
      additionalProperties: false,
    },
    create: provision,
    update: (ctx) => provision(ctx),
    destroy: async () => {},
    async secrets(r): Promise<Record<string, string>> {
      const spec = await endpointOf(r.tenant, nameOf(r));
      return spec.signing_secret ? { signing: spec.signing_secret } : {};
    },
    async call(ctx: ToolCallContext): Promise<unknown> {
      const spec = await endpointOf(ctx.tenant, nameOf(ctx.resource));
      const payload = ctx.args.body;
      if (payload === null || typeof payload !== "object" || Array.isArray(payload))
        throw new AppError("invalid_input", "body must be a JSON object");
      const body = JSON.stringify(payload);
      const seconds = Math.floor(clock.now() / 1000);
      const headers = ctx.secrets.signing
        ? signStandardWebhook(ctx.secrets.signing, ctx.callId, seconds, body)
        : { "webhook-id": ctx.callId, "webhook-timestamp": String(seconds) };
      headers["agentowl-tool-call"] = ctx.callId;
      const timeout = spec.timeout ? (parseDuration(spec.timeout) ?? DEFAULT_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
      const result = await postJson(spec.url, body, headers, {
        allowPublic: spec.allow_public === true,
        connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, timeout),
        timeoutMs: timeout,
        excerptBytes: ANSWER_BYTES,
        resolve: deps.resolve,
        clock,
      });
      if (result.errorClass === "egress")
        throw new AppError("forbidden", result.error ?? "refused by the egress guard");
      if (result.errorClass === "timeout") throw new AppError("timeout", result.error ?? "timed out");
      if (result.errorClass) throw new AppError("unavailable", `${result.errorClass}: ${result.error}`);
      if (!result.ok)
        throw new AppError(
          "unavailable",
          `endpoint ${spec.name} answered HTTP ${result.status}: ${result.excerpt.slice(0, 300)}`,
        );
      return { status: result.status, body: answerOf(result.excerpt) };
    },
  };
}

/** The answer as JSON when it is JSON, else as text. */
function answerOf(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
