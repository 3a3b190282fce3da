import { Elysia } from "elysia";
import type { Config } from "../../config/index.ts";
import { type Clock, systemClock } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import type { Metrics } from "../../core/metrics.ts";
import type { EventRouting } from "../../events/handoff.ts";
import type { Storage } from "../../store/index.ts";
import type { Vault } from "../../vault/vault.ts";
import { eventAcceptor } from "./accept.ts";
import { Backlog } from "./backlog.ts";
import { ingressGuard } from "./guard.ts";
import { telnyxRoute } from "./telnyx.ts";
import { WEBHOOK_PATH, webhookRoute } from "./webhook.ts";

/**
 * HTTP ingress (docs/api.md): signed webhooks from LAN systems at /ingress/webhook/:tenant/:binding
 * (webhook.ts) and Telnyx messaging and voice webhooks at /ingress/telnyx (telnyx.ts). The order
 * of the checks is the order of their cost, and nothing is written until the request has passed
 * all of them:
 *
 *   binding exists (404) → body size (413) → this address's failed verifications (429) → backlog
 *   (503) → content type (415) → signature over the raw bytes (401) → the binding's rate (429)
 *   → delivery id (400) → event + outbox entry in one group commit → 202
 *
 * The checks both routes share are guard.ts (with backlog.ts and verify.ts), and the commit is
 * accept.ts. A repeat of a delivery (its provider id, or Idempotency-Key) answers 200 with the
 * first event's id and stores nothing; idempotency.ts says how an id becomes a key.
 */

export interface IngressDeps {
  config: Config;
  storage: Storage;
  vault: Vault;
  metrics: Metrics;
  log: Logger;
  /** Routing at the commit; without it events reach the router through the outbox. */
  routing?: EventRouting;
  clock?: Clock;
}

/**
 * Both ingress routes, sharing one set of budgets, one backlog sample and one secret cache: `app`
 * for the Elysia app, and `routes`, the webhook route again as a Bun.serve route for the main
 * listener to serve ahead of Elysia (webhook.ts says why).
 */
export function ingressRoutes(deps: IngressDeps) {
  const { storage, metrics, log, config } = deps;
  const clock = deps.clock ?? systemClock;
  // The backlog alone: counting the finished jobs kept for the retention window would stall the
  // event loop in proportion to them (30 ms at 100,000), twice a second.
  const backlog = new Backlog(() => storage.queue.backlog(), config.ingressQueueHighWater, clock);
  const guard = ingressGuard({
    authFailuresPerAddress: config.ingressAuthFailuresPerAddress,
    ratePerBinding: config.ingressRatePerBinding,
    backlog,
    vault: deps.vault,
    metrics,
    log,
    clock,
  });
  const accept = eventAcceptor({ storage, metrics, clock, routing: deps.routing });
  const route = { storage, metrics, clock, guard, accept };
  const webhook = webhookRoute({ ...route, log });
  return {
    app: new Elysia({ normalize: false }).use(webhook.app).use(telnyxRoute(route)),
    routes: { [WEBHOOK_PATH]: { POST: webhook.raw } },
  };
}
