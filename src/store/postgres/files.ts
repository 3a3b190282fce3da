import { randomBytes } from "node:crypto";
import { type Clock, systemClock } from "../../core/clock.ts";
import { AppError } from "../../errors/index.ts";
import type { Blobs, SharedSlots, SharedSpool, SpoolRef } from "../contract.ts";
import { num, type PgDb } from "./db.ts";

/**
 * What SQLite keeps in files under its data dir, kept in PostgreSQL so that every node reads it
 * (docs/architecture.md#several-nodes): blobs and the raw mail spool as 1 MiB bytea chunks, and
 * the endpoints' in-flight places. Every write is one autocommit statement on the pool (durable
 * when it returns: synchronous_commit=on), so none holds the event loop while its bytes travel.
 */

export const CHUNK_BYTES = 1024 * 1024;
/** Chunks read per statement: a read holds at most this many MiB at a time. */
const CHUNKS_PER_READ = 4;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function chunksOf(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += CHUNK_BYTES) out.push(bytes.subarray(at, at + CHUNK_BYTES));
  return out;
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  if (at !== size) throw new AppError("internal", `stored bytes are ${at} long, ${size} expected`);
  return out;
}

const checked = (sha256: string): string => {
  if (!SHA256_HEX.test(sha256)) throw new AppError("invalid_input", "a blob is named by 64 lower-case hex digits");
  return sha256;
};

/** `(0, $4::bytea), (1, $5::bytea), …` for the chunks, their parameters appended to `params`. */
function chunkValues(chunks: Uint8Array[], params: unknown[]): string {
  return chunks
    .map((c, i) => {
      params.push(c);
      return `(${i}, $${params.length}::bytea)`;
    })
    .join(", ");
}

/** Blobs in `blobs` (name, size) and `blob_chunks`; a row and its chunks are written by one statement. */
export class PgBlobs implements Blobs {
  constructor(
    private readonly db: PgDb,
    private readonly clock: Clock = systemClock,
  ) {}

  async put(bytes: Uint8Array): Promise<{ sha256: string; size: number }> {
    const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
    const size = bytes.byteLength;
    const params: unknown[] = [sha256, size, this.clock.now()];
    const chunks = chunksOf(bytes);
    // A second put of the same content waits on the first's unique key, then inserts nothing.
    const row = "INSERT INTO blobs (sha256, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING";
    await this.db.read(
      chunks.length === 0
        ? row
        : `WITH b AS (${row} RETURNING sha256) INSERT INTO blob_chunks (sha256, idx, bytes) ` +
            `SELECT b.sha256, c.idx, c.bytes FROM b, (VALUES ${chunkValues(chunks, params)}) AS c(idx, bytes)`,
      params,
    );
    return { sha256, size };
  }

  /** The blob's bytes a few chunks at a time, in order; nothing when there is no such blob. */
  async *chunks(sha256: string): AsyncGenerator<Uint8Array> {
    for (let next = 0; ; ) {
      const rows = await this.db.read<{ idx: number; bytes: Uint8Array }>(
        "SELECT idx, bytes FROM blob_chunks WHERE sha256 = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
        [checked(sha256), next, CHUNKS_PER_READ],
      );
      for (const r of rows) yield r.bytes;
      if (rows.length < CHUNKS_PER_READ) return;
      next = num(rows.at(-1)!.idx) + 1;
    }
  }

  async get(sha256: string): Promise<Uint8Array | null> {
    const [row] = await this.db.read<{ size: unknown }>("SELECT size FROM blobs WHERE sha256 = $1", [checked(sha256)]);
    if (!row) return null;
    const parts: Uint8Array[] = [];
    for await (const c of this.chunks(sha256)) parts.push(c);
    return concat(parts, num(row.size));
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.db.read("SELECT 1 FROM blobs WHERE sha256 = $1", [checked(sha256)])).length > 0;
  }

  async delete(sha256s: Iterable<string>): Promise<number> {
    const names = [...new Set([...sha256s].map(checked))];
    if (names.length === 0) return 0;
    const [r] = await this.db.read<{ n: unknown }>(
      "WITH d AS (DELETE FROM blobs WHERE sha256 = ANY($1::text[]) RETURNING sha256), " +
        "c AS (DELETE FROM blob_chunks WHERE sha256 IN (SELECT sha256 FROM d)) SELECT count(*) AS n FROM d",
      [names],
    );
    return num(r?.n ?? 0);
  }

  /** A put is one statement: it leaves nothing half-written. */
  async removeTemps(): Promise<number> {
    return 0;
  }
}

const SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
const SEGMENT_MAX_AGE_MS = 60 * 60 * 1000;
const SIZE_REFRESH_MS = 10_000;

/**
 * The SMTP spool in `spool_chunks`. Each node appends to segments of its own (named as the file
 * spool names them, with random bits, so no two nodes share one), a message at the next offset;
 * a message's chunks are one statement, committed before `append` resolves.
 */
export class PgSpool implements SharedSpool {
  private segment: { name: string; size: number; createdAt: number } | null = null;
  private measured = 0;
  private measuring: Promise<void> | null = null;
  private measuredAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly db: PgDb,
    private readonly clock: Clock = systemClock,
  ) {}

  async append(bytes: Uint8Array): Promise<SpoolRef> {
    const now = this.clock.now();
    let seg = this.segment;
    if (!seg || seg.size + bytes.byteLength > SEGMENT_MAX_BYTES || now - seg.createdAt >= SEGMENT_MAX_AGE_MS) {
      seg = {
        name: `${String(now).padStart(15, "0")}-${randomBytes(4).toString("hex")}.spool`,
        size: 0,
        createdAt: now,
      };
      this.segment = seg;
    }
    // The range is taken before the write: a failed write leaves a gap, never a reused offset.
    const ref = { segment: seg.name, offset: seg.size, length: bytes.byteLength };
    seg.size += bytes.byteLength;
    await this.writeAt(ref, bytes, now);
    return ref;
  }

  async writeAt(ref: SpoolRef, bytes: Uint8Array, at: number): Promise<void> {
    const chunks = chunksOf(bytes);
    if (chunks.length === 0) chunks.push(new Uint8Array());
    const params: unknown[] = [ref.segment, ref.offset, at];
    await this.db.read(
      `INSERT INTO spool_chunks (segment, "offset", idx, bytes, created_at) ` +
        `SELECT $1, $2, c.idx, c.bytes, $3 FROM (VALUES ${chunkValues(chunks, params)}) AS c(idx, bytes)`,
      params,
    );
  }

  async read(ref: SpoolRef): Promise<Uint8Array | null> {
    const parts: Uint8Array[] = [];
    for (let next = 0; ; ) {
      const rows = await this.db.read<{ idx: number; bytes: Uint8Array }>(
        `SELECT idx, bytes FROM spool_chunks WHERE segment = $1 AND "offset" = $2 AND idx >= $3 ORDER BY idx LIMIT $4`,
        [ref.segment, ref.offset, next, CHUNKS_PER_READ],
      );
      parts.push(...rows.map((r) => r.bytes));
      if (rows.length < CHUNKS_PER_READ) break;
      next = num(rows.at(-1)!.idx) + 1;
    }
    if (parts.length === 0) return null;
    return concat(parts, ref.length);
  }

  async purge(cutoff: number): Promise<{ segments: number; bytes: number }> {
    const [r] = await this.db.read<{ segments: unknown; bytes: unknown }>(
      "WITH d AS (DELETE FROM spool_chunks WHERE created_at < $1 RETURNING segment, length(bytes) AS n) " +
        "SELECT count(DISTINCT segment) AS segments, coalesce(sum(n), 0) AS bytes FROM d",
      [cutoff],
    );
    this.measuredAt = Number.NEGATIVE_INFINITY;
    return { segments: num(r?.segments ?? 0), bytes: num(r?.bytes ?? 0) };
  }

  size(): number {
    if (!this.measuring && performance.now() - this.measuredAt > SIZE_REFRESH_MS) {
      this.measuredAt = performance.now();
      this.measuring = this.db
        .read<{ n: unknown }>("SELECT pg_total_relation_size('spool_chunks') AS n")
        .then(([r]) => {
          this.measured = num(r?.n ?? 0);
        })
        .catch(() => {})
        .finally(() => {
          this.measuring = null;
        });
    }
    return this.measured;
  }

  async close(): Promise<void> {
    await this.measuring;
  }
}

/**
 * Endpoint places in `endpoint_slots`: rows 0..limit-1 per endpoint, made once per limit this
 * process sees; a take claims a free or expired one with FOR UPDATE SKIP LOCKED (two nodes taking
 * at once get different rows, and a row is checked again once locked), on the committer's
 * connection between its transactions (never inside a unit: the fast path plans before its commit).
 * Its commit need not wait for the WAL flush (synchronous_commit off in that transaction): a take
 * lost with a server crash only leaves the place free, and the attempts it counted were cut off.
 */
export class PgSlots implements SharedSlots {
  private readonly made = new Map<string, number>();

  constructor(
    private readonly db: PgDb,
    private readonly clock: Clock = systemClock,
  ) {}

  take(key: string, limit: number, holder: string, ttlMs: number): number | null {
    if (limit <= 0) return null;
    const now = this.clock.now();
    if ((this.made.get(key) ?? 0) < limit) {
      this.db.sync.query(
        "INSERT INTO endpoint_slots (endpoint, slot) SELECT $1, s FROM generate_series(0, $2 - 1) AS s ON CONFLICT DO NOTHING",
        [key, limit],
      );
      this.made.set(key, limit);
    }
    const conn = this.db.sync;
    conn.defer("BEGIN");
    conn.defer("SET LOCAL synchronous_commit = off");
    let r: { slot: unknown } | undefined;
    try {
      [r] = conn.query<{ slot: unknown }>(
        "UPDATE endpoint_slots SET holder = $3, expires_at = $4 WHERE (endpoint, slot) = " +
          "(SELECT endpoint, slot FROM endpoint_slots WHERE endpoint = $1 AND slot < $2 AND (holder IS NULL OR expires_at <= $5) " +
          "ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING slot",
        [key, limit, holder, now + ttlMs, now],
      );
      conn.query("COMMIT");
    } catch (e) {
      conn.discard();
      try {
        conn.query("ROLLBACK");
      } catch {
        // the connection itself failed: nothing was taken
      }
      throw e;
    }
    return r ? num(r.slot) : null;
  }

  /**
   * One autocommit statement on the pool that does not wait for its WAL flush either
   * (synchronous_commit off for its own transaction, set inside it): a release lost with a server
   * crash leaves the place held until its lease expires, as a node that died holding it does.
   */
  release(key: string, slot: number, holder: string): void {
    void this.db
      .read(
        "UPDATE endpoint_slots SET holder = NULL, expires_at = 0 " +
          "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lossy " +
          "WHERE endpoint = $1 AND slot = $2 AND holder = $3",
        [key, slot, holder],
      )
      .catch(() => {
        // The place comes free when its lease expires.
      });
  }
}
