export { type Accepted, type AcceptEvent, eventAcceptor, type EventFields } from "./accept.ts";
export { BACKLOG_SAMPLE_MS, Backlog } from "./backlog.ts";
export { DEFAULT_MAX_BODY_BYTES, type IngressGuard, ingressGuard } from "./guard.ts";
export { idempotencyKey, MAX_DELIVERY_ID_BYTES, VERBATIM_KEY_CHARS } from "./idempotency.ts";
export { type IngressDeps, ingressRoutes } from "./routes.ts";
export { parseTelnyx, telnyxRoute } from "./telnyx.ts";
export {
  credentialHeaders,
  TOLERANCE_MS,
  type VerifyConfig,
  type VerifyResult,
  type VerifyScheme,
  verifyRequest,
} from "./verify.ts";
export { webhookRoute } from "./webhook.ts";
