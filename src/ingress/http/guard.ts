import type { Clock } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import type { Metrics } from "../../core/metrics.ts";
import type { BindingSpec } from "../../control/resources/specs.ts";
import { AppError } from "../../errors/index.ts";
import { readBody } from "../../server/body.ts";
import { LeasedSecrets } from "../../vault/leased.ts";
import type { Vault } from "../../vault/vault.ts";
import { RateLimiter } from "../rate-limit.ts";
import type { Backlog } from "./backlog.ts";
import { idempotencyKey } from "./idempotency.ts";
import { type VerifyConfig, type VerifyResult, verifyRequest } from "./verify.ts";

/** A body may have this many bytes unless its binding says otherwise (Telnyx: always). */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** What a refusal's log line says about the request besides its reason: never a secret. */
export type RefusalContext = Record<string, unknown>;

export interface GuardDeps {
  /** Failed verifications an address may make per minute (ingress_auth_failures_per_address). */
  authFailuresPerAddress: number;
  /** A binding's rate when it sets none (ingress_rate_per_binding). */
  ratePerBinding: number;
  backlog: Backlog;
  vault: Vault;
  metrics: Metrics;
  log: Logger;
  clock: Clock;
}

type VerifySpec = NonNullable<BindingSpec["verify"]>;
/** A binding without a secret (a public key, or none): one configuration, no value. */
const NO_SECRET: readonly (string | undefined)[] = [undefined];
/**
 * A binding's verify settings with each value of its secret, as verifyRequest takes them: made once
 * per binding spec (replaced, not changed, when its configuration is) and list of values (a new
 * list whenever the vault changes, so a rotated-out value is not kept here), not per request.
 */
const configs = new WeakMap<VerifySpec, { values: readonly (string | undefined)[]; list: VerifyConfig[] }>();
function configsOf(v: VerifySpec, values: readonly (string | undefined)[]): VerifyConfig[] {
  let c = configs.get(v);
  if (c?.values !== values) {
    const list = values.map(
      (secret): VerifyConfig => ({
        scheme: v.scheme,
        publicKey: v.public_key,
        header: v.header,
        encoding: v.encoding,
        secret,
      }),
    );
    configs.set(v, (c = { values, list }));
  }
  return c.list;
}

/**
 * The checks the webhook and Telnyx routes share, in the order the routes call them (routes.ts
 * says why that order). Every refusal is counted by channel and outcome, logged with its reason,
 * and thrown as the AppError the server answers as problem+json.
 *
 * Two budgets, so that nobody can spend someone else's: a request that fails verification takes
 * a token from its source address's bucket, and an address whose bucket is empty is answered 429
 * before any signature is computed again, which bounds the expensive work a forger can cause;
 * only a verified request takes from the binding's bucket, so forged requests never lock out the
 * binding's real sender.
 */
export function ingressGuard(deps: GuardDeps) {
  const { metrics, log, clock, backlog } = deps;
  const secrets = new LeasedSecrets(deps.vault, clock);
  const limiters = new Map<number, RateLimiter>();
  const limiterFor = (perMinute: number) => {
    let l = limiters.get(perMinute);
    if (!l) limiters.set(perMinute, (l = new RateLimiter(perMinute, perMinute, clock)));
    return l;
  };
  // Failed verifications by source address: their own budget, never the binding's.
  const failures = new RateLimiter(deps.authFailuresPerAddress, deps.authFailuresPerAddress, clock);
  const addressKey = (remote_ip: string | null) => remote_ip ?? "unknown";
  const retryAfter = (limiter: RateLimiter, key: string) => Math.max(1, Math.ceil(limiter.retryAfterMs(key) / 1000));

  /** A refusal: counted, logged with its reason (never a secret), and thrown as problem+json. */
  const refuse = (channel: string, outcome: string, e: AppError, context: RefusalContext): never => {
    metrics.ingressRequests.inc({ channel, outcome });
    log.warn("ingress refused", { channel, outcome, reason: e.detail, ...context });
    throw e;
  };

  return {
    refuse,

    /** The raw body, at most `limit` bytes (src/server/body.ts): 413 beyond, 400 for one that ends early. */
    body: (channel: string, request: Request, limit: number, context: RefusalContext): Promise<Uint8Array> =>
      readBody(request, limit).catch((e: AppError) =>
        refuse(channel, e.kind === "too_large" ? "too_large" : "bad_request", e, context),
      ),

    /** Before any verification: an address out of failure budget, a backlog (the checks every binding shares). */
    admit(channel: string, remote_ip: string | null, context: RefusalContext): void {
      const address = addressKey(remote_ip);
      if (failures.retryAfterMs(address) > 0) {
        refuse(
          channel,
          "rate_limited",
          new AppError("rate_limited", "too many requests from this address failed verification", {
            retryAfter: retryAfter(failures, address),
          }),
          { ...context, why: "auth_failures" },
        );
      }
      if (backlog.full()) {
        refuse(
          channel,
          "backlog",
          new AppError("unavailable", "the appliance is catching up with its backlog", { retryAfter: 5 }),
          context,
        );
      }
    },

    /**
     * Check a signature against every value of the binding's secret (the current one, and one in
     * its grace period); a verified result says which value verified, for redaction.
     */
    async verify(
      tenant: string,
      binding: BindingSpec,
      headers: Headers,
      body: Uint8Array,
    ): Promise<VerifyResult & { secret?: string }> {
      const v = binding.verify!;
      if (!v.secret) return verifyRequest(configsOf(v, NO_SECRET)[0]!, headers, body, clock);
      let last: VerifyResult = { ok: false, reason: "misconfigured", detail: "the binding's secret has no value" };
      const values = await secrets.values(v.secret, tenant, `ingress:${tenant}/${binding.name}`);
      const list = configsOf(v, values);
      for (let i = 0; i < list.length; i++) {
        last = verifyRequest(list[i]!, headers, body, clock);
        if (last.ok) return Object.assign(last, { secret: values[i] });
      }
      return last;
    },

    /** A verification that failed: counted against the sender's address (not when the binding cannot verify at all), then 401. */
    unverified(
      channel: string,
      verdict: Extract<VerifyResult, { ok: false }>,
      remote_ip: string | null,
      context: RefusalContext,
    ): never {
      const misconfigured = verdict.reason === "misconfigured";
      if (!misconfigured) failures.take(addressKey(remote_ip));
      return refuse(
        channel,
        misconfigured ? "misconfigured" : "unauthenticated",
        new AppError(
          "unauthenticated",
          misconfigured
            ? "the binding cannot verify requests; see the appliance's log"
            : "the request's signature does not verify",
        ),
        { ...context, why: verdict.reason, detail: verdict.detail },
      );
    },

    /** After verification: the binding's budget, spent by verified requests only. */
    charge(channel: string, binding: BindingSpec, key: string, context: RefusalContext): void {
      const limiter = limiterFor(binding.rate_per_minute ?? deps.ratePerBinding);
      if (!limiter.take(key))
        refuse(
          channel,
          "rate_limited",
          new AppError("rate_limited", "too many requests for this binding", { retryAfter: retryAfter(limiter, key) }),
          context,
        );
    },

    /** The stored key for a verified delivery id (idempotency.ts): 400 for one over the documented length. */
    keyOf(channel: string, deliveryId: string | null, context: RefusalContext): string | null {
      if (deliveryId === null) return null;
      try {
        return idempotencyKey(deliveryId);
      } catch (e) {
        return refuse(channel, "bad_request", e as AppError, context);
      }
    },
  };
}

export type IngressGuard = ReturnType<typeof ingressGuard>;
