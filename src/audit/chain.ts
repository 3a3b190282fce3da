/**
 * The audit log's hash chain (SPEC §3.6): each entry's hash is SHA-256 over the previous entry's
 * hash and the entry's canonical form, so changing, removing or reordering any entry breaks every
 * link after it. Pure: the store computes and checks hashes with these functions only.
 */

export interface AuditEntry {
  seq: number;
  /** Milliseconds since the epoch. */
  at: number;
  /** Who: `token:<id>`, `user:<name>`, `system`. */
  actor: string;
  tenant: string | null;
  /** What: `token.create`, `resource.update`, `config.apply`, `secret.lease`, … */
  action: string;
  /** On what: `beta/endpoints/crm`, `tok_…`, … */
  target: string | null;
  /** The outcome when there was a decision to make: `allow`, `deny`, `approved`, … */
  decision: string | null;
  details: Record<string, unknown>;
}

export interface ChainedEntry extends AuditEntry {
  prevHash: string;
  hash: string;
}

/** The previous hash of the first entry. */
export const GENESIS = "0".repeat(64);

/** JSON with object keys sorted at every level: the same entry always has the same bytes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value as object)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
}

/**
 * canonicalJson of the entry, written out with its keys in sorted order (this is on the append
 * path: twice as fast as the generic walk). `details` may be passed already canonical.
 */
export function canonicalEntry(e: AuditEntry, details: string = canonicalJson(e.details)): string {
  const j = JSON.stringify;
  return `{"action":${j(e.action)},"actor":${j(e.actor)},"at":${j(e.at)},"decision":${j(e.decision)},"details":${details},"seq":${j(e.seq)},"target":${j(e.target)},"tenant":${j(e.tenant)}}`;
}

export function entryHash(prevHash: string, e: AuditEntry, details?: string): string {
  return Bun.CryptoHasher.hash("sha256", `${prevHash}\n${canonicalEntry(e, details)}`, "hex") as string;
}

export type Broken = { seq: number; reason: string };

/**
 * Check a run of entries in seq order, continuing from `prev` (the last good entry before them,
 * or none at the start of the log). Returns the first broken link, if any.
 */
export function verifyRun(entries: readonly ChainedEntry[], prev: { seq: number; hash: string } | null): Broken | null {
  let expectSeq = prev ? prev.seq + 1 : null;
  let prevHash = prev ? prev.hash : GENESIS;
  for (const e of entries) {
    if (expectSeq !== null && e.seq !== expectSeq) return { seq: e.seq, reason: `entry ${expectSeq} is missing (found ${e.seq} after ${expectSeq - 1})` };
    if (e.prevHash !== prevHash) return { seq: e.seq, reason: "its previous-hash does not match the entry before it" };
    if (entryHash(e.prevHash, e) !== e.hash) return { seq: e.seq, reason: "its content does not match its hash" };
    prevHash = e.hash;
    expectSeq = e.seq + 1;
  }
  return null;
}
