import { newId } from "../core/ids.ts";
import { isoTimeMs } from "../core/iso-time.ts";
import { AppError } from "../errors/index.ts";
import type { Envelope, Span } from "../events/envelope.ts";
import type { NewAuditEntry, NewUser, TokenRecord, TokenStore, UserRecord } from "./contract.ts";
import { spansJson } from "./spans.ts";

/** New rows of the console users and API tokens, as every driver writes them. */

/** A new user; `taken` says whether the name exists already (a conflict, not a failed statement of the whole unit). */
export function newUserRow(u: NewUser, now: number, taken: boolean): UserRecord {
  if (taken) throw new AppError("conflict", `user ${u.username} exists already`);
  return {
    id: newId("usr", now),
    ...u,
    tenants: [...u.tenants],
    createdAt: now,
    updatedAt: now,
    failedCount: 0,
    lockedUntil: null,
    lockLevel: 0,
  };
}

/** A new token's row and its audit entry, which names the token and its scopes, never its value or hash. */
export function newTokenRow(
  t: Parameters<TokenStore["create"]>[0],
  now: number,
): { row: TokenRecord & { hash: string }; entry: NewAuditEntry } {
  const row = { id: newId("tok", now), createdAt: now, revokedAt: null, ...t };
  const entry = {
    actor: t.createdBy,
    action: "token.create",
    target: row.id,
    details: { name: t.name, scopes: t.scopes, expires_at: t.expiresAt },
  };
  return { row, entry };
}

/**
 * An event's column values in the order both drivers' INSERT lists them: id, tenant, type,
 * channel, agent, binding, idempotency_key, received_at, envelope (`json`, the envelope already
 * serialized), trace, routing.
 */
export function eventRowValues(
  e: Envelope,
  json: string,
  trace: readonly Span[],
  routing: Record<string, unknown> | null,
): [string, string, string, string, string | null, string, string | null, number, string, string, string | null] {
  return [
    e.id,
    e.tenant,
    e.type,
    e.channel,
    e.agent,
    e.source.binding,
    e.idempotency_key,
    isoTimeMs(e.received_at) ?? Date.parse(e.received_at),
    json,
    spansJson(trace),
    routing && JSON.stringify(routing),
  ];
}
