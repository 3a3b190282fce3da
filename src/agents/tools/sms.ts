import type { BindingSpec } from "../../control/resources/specs.ts";
import { type Clock, systemClock } from "../../core/clock.ts";
import type { Resolve } from "../../dispatch/egress.ts";
import { postJson } from "../../dispatch/post.ts";
import { AppError } from "../../errors/index.ts";
import type { ResourceStore } from "../../store/index.ts";
import type { Provisioned, ToolCallContext, ToolContext, ToolPlugin, ToolRecord } from "../types.ts";
import { E164, text } from "./args.ts";

/**
 * The `sms` tool (docs/agents.md#tools): a number of one of the tenant's telnyx bindings, whose
 * messages go to the agent while the tool is active; outbound messages through Telnyx's API, a
 * public service, only where the template's config for the tool says `allow_public: true`. The
 * API key is the claim's (`provisioning: user`, kept in the vault) or a vault reference in the
 * config (`api_key`); either is leased for exactly one call.
 */

export const TELNYX_API = "https://api.telnyx.com/v2";
const TIMEOUT_MS = 30_000;

export function smsPlugin(deps: { resources: ResourceStore; clock?: Clock; resolve?: Resolve }): ToolPlugin {
  const clock = deps.clock ?? systemClock;
  const provision = async (ctx: ToolContext): Promise<Provisioned> => {
    const number = ctx.config.number;
    if (typeof number !== "string" || !E164.test(number))
      throw new AppError("invalid_input", "an sms tool needs config.number, a number in E.164 form (+15551234567)");
    const bindings = await deps.resources.list({ tenant: ctx.tenant, kind: "bindings", limit: 10_000 });
    if (
      !bindings.some(
        (r) => (r.spec as BindingSpec).type === "telnyx" && (r.spec as BindingSpec).numbers?.includes(number),
      )
    )
      throw new AppError("invalid_input", `no telnyx binding of tenant ${ctx.tenant} lists ${number}`);
    const apiKey = ctx.config.api_key;
    if (apiKey !== undefined && (typeof apiKey !== "string" || !apiKey.startsWith(`vault:${ctx.tenant}/`)))
      throw new AppError("invalid_input", `config.api_key must be a vault reference of tenant ${ctx.tenant}`);
    return {
      resourceId: number,
      config: {
        number,
        allow_public: ctx.config.allow_public === true,
        ...(typeof ctx.config.api_base === "string" ? { api_base: ctx.config.api_base } : {}),
        ...(apiKey ? { api_key: apiKey } : {}),
      },
    };
  };
  return {
    id: "sms",
    description:
      "A Telnyx number of the tenant: its messages become the agent's tasks; sending goes through Telnyx's API where allow_public says so.",
    provisioning: ["pool", "user"],
    parameters: {
      type: "object",
      properties: {
        to: { type: "string", description: "the recipient's number, E.164" },
        text: { type: "string", description: "the message" },
      },
      required: ["to", "text"],
      additionalProperties: false,
    },
    validateCredentials(credentials) {
      const key = credentials.api_key;
      if (typeof key !== "string" || key.length < 10 || /\s/.test(key))
        throw new AppError("invalid_input", "an sms tool's credentials need api_key, a Telnyx API key");
      return { api_key: key };
    },
    create: provision,
    update: (ctx) => provision(ctx),
    destroy: async () => {},
    async secrets(r: ToolRecord): Promise<Record<string, string>> {
      if (r.secretRef) return { credentials: r.secretRef };
      return typeof r.config.api_key === "string" ? { api_key: r.config.api_key } : {};
    },
    async call(ctx: ToolCallContext): Promise<unknown> {
      const { config } = ctx.resource;
      if (config.allow_public !== true)
        throw new AppError(
          "forbidden",
          "sending an SMS goes to Telnyx's API on the internet: the template's config for this tool must say allow_public: true",
        );
      const key = ctx.secrets.api_key ?? credentialsKey(ctx.secrets.credentials);
      if (!key) throw new AppError("unavailable", "this sms tool has no Telnyx API key");
      const to = text(ctx.args, "to", 16)!;
      if (!E164.test(to)) throw new AppError("invalid_input", "to must be a number in E.164 form");
      const message = text(ctx.args, "text", 1600)!;
      const base = typeof config.api_base === "string" ? config.api_base : TELNYX_API;
      const result = await postJson(
        `${base.replace(/\/+$/, "")}/messages`,
        JSON.stringify({ from: config.number, to, text: message }),
        { authorization: `Bearer ${key}`, accept: "application/json" },
        {
          allowPublic: true,
          connectTimeoutMs: 5_000,
          timeoutMs: TIMEOUT_MS,
          excerptBytes: 16 * 1024,
          resolve: deps.resolve,
          clock,
        },
      );
      if (!result.ok)
        throw new AppError(
          "unavailable",
          `Telnyx: ${result.status ? `HTTP ${result.status} ${result.excerpt.slice(0, 300)}` : result.error}`,
        );
      const id = (() => {
        try {
          return (JSON.parse(result.excerpt) as { data?: { id?: unknown } }).data?.id ?? null;
        } catch {
          return null;
        }
      })();
      return { status: result.status, id };
    },
  };
}

/** A `provisioning: user` tool's credentials are kept in the vault as one JSON object. */
function credentialsKey(stored: string | undefined): string | undefined {
  if (!stored) return undefined;
  try {
    const key = (JSON.parse(stored) as { api_key?: unknown }).api_key;
    return typeof key === "string" ? key : undefined;
  } catch {
    return undefined;
  }
}
