import { Database } from "bun:sqlite";
import { SQL } from "bun";
import { is } from "drizzle-orm";
import { getTableConfig, PgTable } from "drizzle-orm/pg-core";
import { AppError } from "../errors/index.ts";
import { existsSync, openSync, readFileSync, readSync, closeSync } from "node:fs";
import { join } from "node:path";
import type { Blobs, SharedSpool } from "./contract.ts";
import { SCHEMA_VERSION } from "./migrate.ts";
import { pgSchema } from "./postgres/index.ts";
import { referencedFiles } from "./sqlite/index.ts";

/**
 * The copy of a stopped SQLite appliance into an empty PostgreSQL database
 * (`agentowl store migrate`, docs/operations.md#moving-to-postgresql): every table row for row, its
 * keys and sequences as they are, so the audit chain, the outbox's positions and the job ids carry
 * over unchanged; then the attachment blobs, through the target storage's `Blobs`. The two schemas
 * are the same tables column for column (src/store/postgres/schema/index.ts); each value is turned
 * from SQLite's storage class into the PostgreSQL column's type.
 */

/** Tables of the SQLite database that are its own bookkeeping, not the appliance's data. */
const SQLITE_OWN = new Set(["schema_migrations", "sqlite_sequence"]);
/** Rows per INSERT, and bytes: a batch is one statement, sent as one JSON parameter. */
const BATCH_ROWS = 2000;
const BATCH_BYTES = 8 * 1024 * 1024;

type Kind = "int" | "bool" | "json" | "text" | "bytes";

interface TableCopy {
  name: string;
  columns: { name: string; kind: Kind; sqlType: string }[];
  /** Columns filled from a sequence (bigserial): the sequence continues after the copied rows. */
  serial: string[];
  /** Tables whose rows this one's foreign keys point at. */
  after: string[];
}

const kindOf = (sqlType: string): Kind =>
  sqlType === "boolean"
    ? "bool"
    : sqlType === "jsonb"
      ? "json"
      : sqlType === "bytea"
        ? "bytes"
        : sqlType === "text"
          ? "text"
          : "int";

/** The PostgreSQL schema's tables, each after the tables its foreign keys name. */
export function copyPlan(): TableCopy[] {
  const tables = (Object.values(pgSchema) as unknown[])
    .filter((v): v is PgTable => is(v, PgTable))
    .map((t): TableCopy => {
      const c = getTableConfig(t);
      return {
        name: c.name,
        columns: c.columns.map((col) => ({
          name: col.name,
          kind: kindOf(col.getSQLType()),
          sqlType: col.getSQLType() === "bigserial" ? "bigint" : col.getSQLType(),
        })),
        serial: c.columns.filter((col) => col.getSQLType() === "bigserial").map((col) => col.name),
        after: c.foreignKeys.map((fk) => getTableConfig(fk.reference().foreignTable).name).filter((n) => n !== c.name),
      };
    });
  const ordered: TableCopy[] = [];
  const placed = new Set<string>();
  while (ordered.length < tables.length) {
    const next = tables.find((t) => !placed.has(t.name) && t.after.every((a) => placed.has(a)));
    if (!next) throw new Error("the PostgreSQL schema's foreign keys form a cycle");
    ordered.push(next);
    placed.add(next.name);
  }
  return ordered;
}

export interface TableCount {
  table: string;
  sqlite: number;
  postgres: number;
}

export interface CopyProgress {
  table: string;
  done: number;
  total: number;
}

/**
 * Why the database at `url` cannot take a migration, or null when it can: it holds no table, or
 * only the appliance's schema with no row in any of its tables (a migration that failed, or a
 * schema created by a node that never wrote).
 */
export async function notEmptyReason(url: string): Promise<string | null> {
  const sql = new SQL(url, { max: 1 });
  try {
    const rels = (await sql.unsafe(
      "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " +
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') " +
        "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
    )) as { schema: string; name: string }[];
    if (rels.length === 0) return null;
    const ours = new Set([...copyPlan().map((t) => t.name), "schema_migrations"]);
    const foreign = rels.filter((r) => r.schema !== "public" || !ours.has(r.name));
    if (foreign.length)
      return `it holds tables that are not agentowl's (${foreign
        .slice(0, 5)
        .map((r) => `${r.schema}.${r.name}`)
        .join(", ")}${foreign.length > 5 ? ", …" : ""})`;
    const filled: string[] = [];
    for (const r of rels) {
      if (r.name === "schema_migrations" || r.name === "singleton_leases") continue;
      const [row] = (await sql.unsafe(`SELECT EXISTS (SELECT 1 FROM "${r.name}") AS some`)) as { some: boolean }[];
      if (row?.some) filled.push(r.name);
    }
    return filled.length ? `it already holds agentowl data (rows in ${filled.join(", ")})` : null;
  } finally {
    await sql.close({ timeout: 5 }).catch(() => {});
  }
}

/** Refuse a SQLite database this binary cannot copy as it is: another schema version, or unknown tables. */
function checkSource(db: Database, plan: readonly TableCopy[]): void {
  const version = db.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version ?? 0;
  if (version !== SCHEMA_VERSION)
    throw new AppError(
      "conflict",
      `the SQLite database has schema version ${version}, this agentowl copies version ${SCHEMA_VERSION}: ` +
        (version < SCHEMA_VERSION
          ? "start this agentowl on the data dir once (it migrates the database), stop it, then migrate"
          : "migrate with the agentowl that wrote it"),
    );
  const known = new Set(plan.map((t) => t.name));
  const tables = db
    .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .all()
    .map((r) => r.name)
    .filter((n) => !SQLITE_OWN.has(n));
  const unknown = tables.filter((n) => !known.has(n));
  if (unknown.length)
    throw new AppError("internal", `the SQLite database has tables the PostgreSQL schema lacks: ${unknown.join(", ")}`);
}

/** One SQLite value as the PostgreSQL column takes it (inside the batch's JSON). */
function convert(v: unknown, kind: Kind, where: () => string): unknown {
  if (v === null || v === undefined) return null;
  switch (kind) {
    case "bool":
      return v !== 0 && v !== 0n;
    case "json":
      try {
        return JSON.parse(v as string);
      } catch {
        throw new AppError("internal", `${where()} is not JSON: cannot store it as jsonb`);
      }
    case "bytes":
      return Buffer.from(v as Uint8Array).toString("hex");
    case "int":
      return typeof v === "bigint" ? Number(v) : v;
    default:
      return v;
  }
}

/**
 * Copy every table of the SQLite database at `sqlitePath` into the (migrated, empty) PostgreSQL
 * database at `url`, in one transaction: a copy that fails leaves no row behind, and can be run
 * again. Rows are read in rowid order, in batches, and inserted as one `INSERT … SELECT FROM
 * jsonb_to_recordset($1)` per batch; sequences continue after the copied keys (and after SQLite's
 * AUTOINCREMENT high-water marks, so an audit or outbox number is never handed out twice; the
 * job with the largest id is never purged, so the copied keys cover the jobs'). Returns the
 * rows of each table on both sides, counted after the commit.
 */
export async function copyTables(
  sqlitePath: string,
  url: string,
  opts: { onProgress?: (p: CopyProgress) => void; batchRows?: number } = {},
): Promise<TableCount[]> {
  const plan = copyPlan();
  const db = new Database(sqlitePath, { readonly: true });
  const sql = new SQL(url, { max: 1, connection: { synchronous_commit: "on", application_name: "agentowl-migrate" } });
  try {
    checkSource(db, plan);
    const present = new Set(
      db
        .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .all()
        .map((r) => r.name),
    );
    const highWater = new Map(
      present.has("sqlite_sequence")
        ? db
            .query<{ name: string; seq: number }, []>("SELECT name, seq FROM sqlite_sequence")
            .all()
            .map((r) => [r.name, Number(r.seq)])
        : [],
    );
    const batchRows = opts.batchRows ?? BATCH_ROWS;
    await sql.begin(async (tx) => {
      for (const t of plan) {
        if (!present.has(t.name)) continue;
        const total = db.query<{ n: number }, []>(`SELECT count(*) AS n FROM "${t.name}"`).get()!.n;
        opts.onProgress?.({ table: t.name, done: 0, total });
        const names = t.columns.map((c) => `"${c.name}"`).join(", ");
        const select = t.columns.map((c) => (c.kind === "bytes" ? `decode(x."${c.name}", 'hex')` : `x."${c.name}"`));
        const types = t.columns.map((c) => `"${c.name}" ${c.kind === "bytes" ? "text" : c.sqlType}`).join(", ");
        const insert = `INSERT INTO "${t.name}" (${names}) SELECT ${select.join(", ")} FROM jsonb_to_recordset($1::text::jsonb) AS x(${types})`;
        const read = db.query<Record<string, unknown> & { _rowid: number }, [number, number]>(
          `SELECT rowid AS _rowid, ${names} FROM "${t.name}" WHERE rowid > ? ORDER BY rowid LIMIT ?`,
        );
        let after = Number.MIN_SAFE_INTEGER;
        let done = 0;
        for (;;) {
          const rows = read.all(after, batchRows);
          if (rows.length === 0) break;
          let batch: unknown[] = [];
          let bytes = 0;
          const flush = async () => {
            if (!batch.length) return;
            await tx.unsafe(insert, [JSON.stringify(batch)]);
            done += batch.length;
            batch = [];
            bytes = 0;
            opts.onProgress?.({ table: t.name, done, total });
          };
          for (const r of rows) {
            const out: Record<string, unknown> = {};
            for (const c of t.columns)
              out[c.name] = convert(r[c.name], c.kind, () => `${t.name}.${c.name} of row ${r._rowid}`);
            batch.push(out);
            bytes += JSON.stringify(out).length;
            if (bytes >= BATCH_BYTES) await flush();
          }
          await flush();
          after = rows.at(-1)!._rowid;
        }
        for (const col of t.serial) {
          const [m] = (await tx.unsafe(`SELECT max("${col}") AS m FROM "${t.name}"`)) as { m: unknown }[];
          const last = Math.max(m?.m == null ? 0 : Number(m.m), highWater.get(t.name) ?? 0);
          // is_called false at 1: the next value is 1, as on a table that never had a row.
          await tx.unsafe(`SELECT setval(pg_get_serial_sequence($1, $2), $3, $4)`, [
            t.name,
            col,
            Math.max(last, 1),
            last > 0,
          ]);
        }
      }
    });
    const counts: TableCount[] = [];
    for (const t of plan) {
      if (!present.has(t.name)) continue;
      const sqlite = db.query<{ n: number }, []>(`SELECT count(*) AS n FROM "${t.name}"`).get()!.n;
      const [row] = (await sql.unsafe(`SELECT count(*)::bigint AS n FROM "${t.name}"`)) as { n: unknown }[];
      counts.push({ table: t.name, sqlite, postgres: Number(row!.n) });
    }
    return counts;
  } finally {
    db.close();
    await sql.close({ timeout: 5 }).catch(() => {});
  }
}

export interface FileCopy {
  blobs: { referenced: number; copied: number; present: number; missing: string[] };
  spool: { segments: number; bytes: number; missing: string[] };
}

/**
 * The files the rows refer to: each attachment blob is read from `source` and put into `target`
 * (where the PostgreSQL driver keeps blobs; one it already has is not read again), and each
 * message's raw bytes, read from its spool segment in `spoolDir`, put into `spool` at the place
 * its row names (the PostgreSQL driver keeps the spool in the database, for every node). What was
 * already gone (pruned by retention) is listed.
 */
export async function copyFiles(
  sqlitePath: string,
  source: Blobs,
  target: Blobs,
  spoolDir: string,
  spool: SharedSpool,
  onProgress?: (p: CopyProgress) => void,
): Promise<FileCopy> {
  const refs = referencedFiles(sqlitePath);
  const out: FileCopy = {
    blobs: { referenced: refs.blobs.length, copied: 0, present: 0, missing: [] },
    spool: { segments: refs.segments.length, bytes: 0, missing: [] },
  };
  let done = 0;
  for (const sha of refs.blobs) {
    if (await target.has(sha)) out.blobs.present++;
    else {
      const bytes = await source.get(sha);
      if (!bytes) out.blobs.missing.push(sha);
      else {
        const put = await target.put(bytes);
        if (put.sha256 !== sha) throw new AppError("internal", `blob ${sha} does not hold the bytes its name says`);
        out.blobs.copied++;
      }
    }
    onProgress?.({ table: "blobs", done: ++done, total: refs.blobs.length });
  }
  const db = new Database(sqlitePath, { readonly: true });
  try {
    const messages = db
      .query<{ segment: string; offset: number; length: number; at: number }, []>(
        "SELECT spool_segment AS segment, spool_offset AS offset, spool_length AS length, received_at AS at " +
          "FROM mail_messages ORDER BY spool_segment, spool_offset",
      )
      .all();
    const missing = new Set<string>();
    let copied = 0;
    let fd = null as { name: string; fd: number } | null;
    try {
      for (const m of messages) {
        if (fd?.name !== m.segment) {
          if (fd) closeSync(fd.fd);
          fd = null;
          const file = join(spoolDir, m.segment);
          if (!existsSync(file)) {
            missing.add(m.segment);
            continue;
          }
          fd = { name: m.segment, fd: openSync(file, "r") };
        }
        const bytes = new Uint8Array(m.length);
        if (readSync(fd.fd, bytes, 0, m.length, m.offset) < m.length) {
          missing.add(m.segment);
          continue;
        }
        await spool.writeAt({ segment: m.segment, offset: m.offset, length: m.length }, bytes, m.at);
        out.spool.bytes += m.length;
        onProgress?.({ table: "spool", done: ++copied, total: messages.length });
      }
    } finally {
      if (fd) closeSync(fd.fd);
    }
    out.spool.missing = [...missing];
  } finally {
    db.close();
  }
  return out;
}

/**
 * The data dir's signed audit checkpoints into the table every node anchors to, each line as it
 * is (its signature holds the same there), in their order: the chain copied with the rows stays
 * anchored where it was.
 */
export async function copyCheckpoints(url: string, file: string): Promise<number> {
  if (!existsSync(file)) return 0;
  const lines = readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim());
  const sql = new SQL(url, { max: 1 });
  try {
    await sql.begin(async (tx) => {
      for (const line of lines) {
        const v = JSON.parse(line) as { seq?: unknown; pruned_through?: unknown };
        const seq = Number(v.seq);
        const pruned = Number(v.pruned_through ?? 0);
        if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(pruned))
          throw new AppError("invalid_input", `a line of ${file} is not a checkpoint: ${line.slice(0, 80)}`);
        await tx`INSERT INTO audit_checkpoints (seq, pruned_through, line) VALUES (${seq}, ${pruned}, ${line})`;
      }
    });
  } finally {
    await sql.close();
  }
  return lines.length;
}
