import { and, desc, eq, gt, gte, inArray, lt, lte, or, type SQL, sql } from "drizzle-orm";
import { type AuditEntry, type Broken, type ChainedEntry, canonicalJson, entryHash, GENESIS, verifyRun } from "../../audit/chain.ts";
import { auditLog } from "../schema/index.ts";
import type { Db, SqliteHandle } from "../sqlite.ts";
import type { SqliteCommitter, SqliteTx } from "./committer.ts";

export type NewAuditEntry = Omit<AuditEntry, "seq" | "at" | "tenant" | "target" | "decision" | "details"> &
  Partial<Pick<AuditEntry, "tenant" | "target" | "decision" | "details">>;

export interface AuditQuery {
  tenants?: readonly string[];
  action?: string;
  actor?: string;
  /** Entries about one event: its id is their target or their details' `event`. */
  event?: string;
  since?: number;
  until?: number;
  before?: number;
  limit: number;
}

export interface VerifyReport {
  ok: boolean;
  entries: number;
  head: string;
  firstBroken: Broken | null;
}

const VERIFY_BATCH = 5000;

/**
 * The audit log on SQLite. `appendTx` adds an entry inside the caller's unit of work: a state
 * change and its entry commit together, and a failed append rolls the change back. `append`
 * commits an entry on its own, before an external write (a delivery, a secret lease) happens.
 */
export class SqliteAudit {
  private readonly last;
  private readonly insert;

  constructor(
    private readonly handle: SqliteHandle,
    private readonly committer: SqliteCommitter,
  ) {
    this.last = handle.sqlite.prepare<{ seq: number; hash: string }, []>("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
    this.insert = handle.sqlite.prepare<never, [number, number, string, string | null, string, string | null, string | null, string, string, string]>(
      "INSERT INTO audit_log (seq, at, actor, tenant, action, target, decision, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
  }

  private get db(): Db {
    return this.handle.db;
  }

  appendTx(tx: SqliteTx, e: NewAuditEntry): ChainedEntry {
    // The previous entry is read inside the transaction: appends are serialized by the committer.
    const prev = this.last.get();
    const entry: AuditEntry = {
      seq: (prev?.seq ?? 0) + 1,
      at: tx.now,
      actor: e.actor,
      tenant: e.tenant ?? null,
      action: e.action,
      target: e.target ?? null,
      decision: e.decision ?? null,
      details: e.details ?? {},
    };
    const prevHash = prev?.hash ?? GENESIS;
    // Details are stored in canonical form, so verify can tell any change of their bytes.
    const details = canonicalJson(entry.details);
    const hash = entryHash(prevHash, entry, details);
    this.insert.run(entry.seq, entry.at, entry.actor, entry.tenant, entry.action, entry.target, entry.decision, details, prevHash, hash);
    return { ...entry, prevHash, hash };
  }

  append(e: NewAuditEntry): Promise<ChainedEntry> {
    return this.committer.run((tx) => this.appendTx(tx, e));
  }

  async list(q: AuditQuery): Promise<ChainedEntry[]> {
    const where: (SQL | undefined)[] = [
      q.tenants ? inArray(auditLog.tenant, [...q.tenants]) : undefined,
      q.action ? eq(auditLog.action, q.action) : undefined,
      q.actor ? eq(auditLog.actor, q.actor) : undefined,
      q.event ? or(eq(auditLog.target, q.event), sql`json_extract(${auditLog.details}, '$.event') = ${q.event}`) : undefined,
      q.since !== undefined ? gte(auditLog.at, q.since) : undefined,
      q.until !== undefined ? lte(auditLog.at, q.until) : undefined,
      q.before !== undefined ? lt(auditLog.seq, q.before) : undefined,
    ];
    return this.db.select().from(auditLog).where(and(...where)).orderBy(desc(auditLog.seq)).limit(q.limit).all();
  }

  /** Walk the whole chain in seq order and name the first broken link. */
  async verify(): Promise<VerifyReport> {
    const page = this.handle.sqlite.prepare<RawRow, [number, number]>(
      "SELECT seq, at, actor, tenant, action, target, decision, details, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    );
    let prev: { seq: number; hash: string } | null = null;
    let entries = 0;
    const fail = (broken: Broken): VerifyReport => ({ ok: false, entries, head: prev?.hash ?? GENESIS, firstBroken: broken });
    for (;;) {
      const rows = page.all(prev?.seq ?? 0, VERIFY_BATCH);
      if (rows.length === 0) break;
      if (prev === null && rows[0]!.seq !== 1) return fail({ seq: rows[0]!.seq, reason: "the log does not start at entry 1" });
      const batch: ChainedEntry[] = [];
      for (const r of rows) {
        const details = parseCanonical(r.details);
        if (details === null) {
          // Check the links before it first: an earlier break is the one to report.
          const earlier = verifyRun(batch, prev);
          return fail(earlier ?? { seq: r.seq, reason: "its details were altered" });
        }
        batch.push({ seq: r.seq, at: r.at, actor: r.actor, tenant: r.tenant, action: r.action, target: r.target, decision: r.decision, details, prevHash: r.prev_hash, hash: r.hash });
      }
      const broken = verifyRun(batch, prev);
      if (broken) {
        entries += batch.findIndex((e) => e.seq === broken.seq);
        return fail(broken);
      }
      entries += batch.length;
      const tail = batch.at(-1)!;
      prev = { seq: tail.seq, hash: tail.hash };
    }
    return { ok: true, entries, head: prev?.hash ?? GENESIS, firstBroken: null };
  }
}

interface RawRow {
  seq: number;
  at: number;
  actor: string;
  tenant: string | null;
  action: string;
  target: string | null;
  decision: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

/** The details object, only if the stored text is exactly its canonical JSON. */
function parseCanonical(text: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(text) as unknown;
    if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
    return canonicalJson(value) === text ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
