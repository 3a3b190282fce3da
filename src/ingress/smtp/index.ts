/**
 * The SMTP ingress (docs/architecture.md#the-smtp-pipeline), one stage per file: listener.ts
 * (network, TLS, limits, budgets), guard.ts (every callback's error answer), session.ts (EHLO,
 * MAIL, per-connection state), recipients.ts (RCPT), data.ts (DATA into the spool), accept.ts
 * (the row and its job in one commit, then 250); spool.ts and tls.ts beside them.
 */
export {
  AcceptStage,
  MAIL_COMMIT,
  MAIL_PROCESS_JOB,
  type MailProcessLocal,
  type ReserveJob,
} from "./accept.ts";
export { DataStage, readMessage, type SpooledMessage } from "./data.ts";
export { type CountStage, guard, replyTo, SmtpReply, stageCounter, storageUnavailable } from "./guard.ts";
export { SmtpIngress, type SmtpIngressDeps } from "./listener.ts";
export {
  type AgentAddresses,
  type ParsedAddress,
  parseRecipient,
  RecipientDirectory,
  RecipientStage,
} from "./recipients.ts";
export { type MessageSpool, Spool, type SpoolRef, type SpoolStats, SpoolUnavailableError } from "./spool.ts";
export { ensureSelfSigned, loadTls, type TlsMaterial, tlsDir } from "./tls.ts";
