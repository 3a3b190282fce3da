/**
 * The audit log's hash chain (guarantees 6 and 10, docs/guarantees.md): each entry's hash is an
 * HMAC-SHA256, keyed with the appliance's audit key, over the previous entry's hash and the
 * entry's canonical form, so changing, removing or reordering any entry breaks every link after
 * it, and someone who can write the database but not read the key cannot recompute the links
 * after a change. Entries written before the chain was keyed carry a plain SHA-256 of the same
 * bytes ("legacy"); they are accepted only up to the position a signed checkpoint vouches for
 * (src/store/audit-checkpoints.ts).
 * Pure: the store computes and checks hashes with these functions only.
 */

import { memoByText } from "../core/memo.ts";

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

/** The JSON text of object keys met lately (`"attempt"`): the same few keys come back with every entry. */
const keyText = memoByText(1024, (k) => JSON.stringify(k));

/**
 * An object's own keys in the order Array.prototype.sort gives them (by UTF-16 code units, as
 * `<` compares strings): an insertion sort, since an entry's objects have a handful of keys and
 * the runtime's sort cost 0.6 µs for each under the dispatch bench.
 */
function sortedKeys(o: object): string[] {
  const keys = Object.keys(o);
  if (keys.length > 32) return keys.sort();
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!;
    let j = i - 1;
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
  return keys;
}

/**
 * JSON with object keys sorted at every level: the same entry always has the same bytes (which
 * every stored hash depends on: a hole in an array stays empty, an undefined member is left out).
 * Written as loops: it is on the append path of every audit entry.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ",";
      if (i in value) out += canonicalJson(value[i]);
    }
    return `${out}]`;
  }
  const o = value as Record<string, unknown>;
  let out = "{";
  for (const k of sortedKeys(o)) {
    const v = o[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ",";
    out += `${keyText(k)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

/**
 * canonicalJson of the entry, written out with its keys in sorted order (this is on the append
 * path: twice as fast as the generic walk). `details` may be passed already canonical.
 */
export function canonicalEntry(e: AuditEntry, details: string = canonicalJson(e.details)): string {
  const j = JSON.stringify;
  return (
    `{"action":${j(e.action)},"actor":${j(e.actor)},"at":${j(e.at)},"decision":${j(e.decision)},` +
    `"details":${details},"seq":${j(e.seq)},"target":${j(e.target)},"tenant":${j(e.tenant)}}`
  );
}

/** The plain SHA-256 link of entries written before the chain was keyed. */
export function entryHash(prevHash: string, e: AuditEntry, details?: string): string {
  return Bun.CryptoHasher.hash("sha256", `${prevHash}\n${canonicalEntry(e, details)}`, "hex") as string;
}

/** An HMAC keyed once per key, copied for each entry: the key's setup is not redone per append. */
const keyed = new WeakMap<Buffer, Bun.CryptoHasher>();

/** The keyed link: HMAC-SHA256 with the chain's entry key over the same bytes as entryHash. */
export function entryMac(key: Buffer, prevHash: string, e: AuditEntry, details?: string): string {
  let template = keyed.get(key);
  if (!template) {
    template = new Bun.CryptoHasher("sha256", key);
    keyed.set(key, template);
  }
  return template
    .copy()
    .update(`${prevHash}\n${canonicalEntry(e, details)}`)
    .digest("hex");
}

/** The two keys of the chain, derived from its root key (src/audit/keys.ts). */
export interface ChainKeys {
  /** Keys every entry's hash. */
  entry: Buffer;
  /** Signs the checkpoints. */
  checkpoint: Buffer;
}

/**
 * Which link each entry must carry. With keys, entries after `legacyThrough` must be keyed and
 * those up to it plain; `legacyThrough: null` (no checkpoint to say) accepts plain links only
 * before the first keyed one, since nobody without the key can write a keyed entry. Without keys
 * (tests and tools that open the database without the vault) every link is plain.
 */
export class LinkCheck {
  private keyedSeen = false;
  /** The last entry accepted as plain (0: none). */
  lastPlain = 0;

  constructor(
    private readonly keys: ChainKeys | null,
    private readonly legacyThrough: number | null,
  ) {}

  /** Why the entry's hash is wrong, or null when it is right. */
  check(e: ChainedEntry): string | null {
    const plain = () => entryHash(e.prevHash, e) === e.hash;
    if (this.keys === null || (this.legacyThrough !== null && e.seq <= this.legacyThrough)) {
      if (plain()) {
        this.lastPlain = e.seq;
        return null;
      }
      return "its content does not match its hash";
    }
    if (entryMac(this.keys.entry, e.prevHash, e) === e.hash) {
      this.keyedSeen = true;
      return null;
    }
    if (!plain()) return "its content does not match its hash";
    if (this.legacyThrough === null && !this.keyedSeen) {
      this.lastPlain = e.seq;
      return null;
    }
    return "its hash is a plain SHA-256 where the chain is keyed: it was rewritten without the audit key";
  }
}

export type Broken = { seq: number; reason: string };

/**
 * Check a run of entries in seq order, continuing from `prev` (the last good entry before them,
 * or none at the start of the log). Returns the first broken link, if any.
 */
export function verifyRun(
  entries: readonly ChainedEntry[],
  prev: { seq: number; hash: string } | null,
  links: LinkCheck = new LinkCheck(null, null),
): Broken | null {
  let expectSeq = prev ? prev.seq + 1 : null;
  let prevHash = prev ? prev.hash : GENESIS;
  for (const e of entries) {
    if (expectSeq !== null && e.seq !== expectSeq)
      return { seq: e.seq, reason: `entry ${expectSeq} is missing (found ${e.seq} after ${expectSeq - 1})` };
    if (e.prevHash !== prevHash) return { seq: e.seq, reason: "its previous-hash does not match the entry before it" };
    const wrong = links.check(e);
    if (wrong) return { seq: e.seq, reason: wrong };
    prevHash = e.hash;
    expectSeq = e.seq + 1;
  }
  return null;
}

/** `<hash>` or `<seq>:<hash>`, as `--expect-head` takes it; null when it is neither. */
export function parseExpectedHead(text: string): { seq: number | null; hash: string } | null {
  const m = /^(?:(\d{1,15}):)?([0-9a-f]{64})$/.exec(text.trim().toLowerCase());
  if (!m) return null;
  return { seq: m[1] === undefined ? null : Number(m[1]), hash: m[2]! };
}
