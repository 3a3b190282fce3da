import { type ErrorKind, isAppError, isStorageUnavailable } from "./app-error.ts";

/** An SMTP answer: the code, the enhanced status code (RFC 3463), and text that reveals nothing internal. */
export interface SmtpAnswer {
  code: number;
  enhanced: string;
  text: string;
}

/**
 * The error model's SMTP column (docs/architecture.md), beside to-problem's HTTP one. Only a
 * failure the client caused or can act on is a 5xx; everything the appliance could not do is a
 * 4xx, so the sender tries again (a 5xx for our own failure would bounce the mail for good).
 */
/** Our failure, whatever it is: the sender tries again later. */
const LATER: SmtpAnswer = { code: 451, enhanced: "4.3.0", text: "local error in processing; try again later" };

const SMTP: Record<ErrorKind, SmtpAnswer> = {
  invalid_input: { code: 501, enhanced: "5.5.4", text: "invalid arguments" },
  unauthenticated: { code: 535, enhanced: "5.7.8", text: "authentication failed" },
  forbidden: { code: 550, enhanced: "5.7.1", text: "not allowed" },
  not_found: { code: 550, enhanced: "5.1.1", text: "no such recipient here" },
  conflict: LATER,
  precondition_failed: LATER,
  too_large: { code: 552, enhanced: "5.3.4", text: "message too big" },
  timeout: { code: 421, enhanced: "4.4.2", text: "timed out" },
  unsupported_media_type: { code: 554, enhanced: "5.6.0", text: "content not accepted" },
  rate_limited: { code: 451, enhanced: "4.7.1", text: "too much mail right now; try again later" },
  storage_full: { code: 452, enhanced: "4.3.1", text: "insufficient system storage; try again later" },
  unavailable: LATER,
  config_invalid: LATER,
  internal: LATER,
};

/** The one mapping from any thrown value to an SMTP answer: a storage failure is 452, anything unexpected 451. */
export function toSmtp(e: unknown): SmtpAnswer {
  if (isAppError(e)) return SMTP[e.kind];
  return isStorageUnavailable(e) ? SMTP.storage_full : SMTP.internal;
}
