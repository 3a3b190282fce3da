import { getTableColumns, getTableName, type Table } from "drizzle-orm";

type Kind = "number" | "json" | "plain";
interface Column {
  key: string;
  name: string;
  kind: Kind;
}

/**
 * A table's rows between PostgreSQL and the contract, from the drizzle schema (./schema/): column
 * names to the contract's field names, bigint (which PostgreSQL sends as text) to numbers, jsonb
 * written as JSON text. The stores write their SQL by hand (units of work are synchronous, drizzle's
 * PostgreSQL queries are not); this keeps the mapping in one place.
 */
export class Rows<T> {
  readonly table: string;
  private readonly columns: Column[];
  private readonly byKey: Map<string, Column>;

  constructor(table: Table) {
    this.table = getTableName(table);
    this.columns = Object.entries(getTableColumns(table)).map(([key, c]) => {
      const type = c.columnType;
      const kind: Kind = /BigInt|BigSerial|Integer|Serial/.test(type) ? "number" : /Json/.test(type) ? "json" : "plain";
      return { key, name: c.name, kind };
    });
    this.byKey = new Map(this.columns.map((c) => [c.key, c]));
  }

  /** A row read from the table as the contract's record. */
  readonly from = (r: Record<string, unknown>): T => {
    const out: Record<string, unknown> = {};
    for (const c of this.columns) {
      const v = r[c.name];
      out[c.key] = v === undefined || v === null ? null : c.kind === "number" ? Number(v) : v;
    }
    return out as T;
  };

  /** `$n` for a value of `key`, with its cast, the value pushed onto `params`. */
  param(key: string, value: unknown, params: unknown[]): string {
    const c = this.byKey.get(key);
    if (!c) throw new Error(`${this.table} has no column for ${key}`);
    if (c.kind === "json") {
      params.push(value === null || value === undefined ? null : JSON.stringify(value));
      return `$${params.length}::text::jsonb`;
    }
    params.push(value === undefined ? null : value);
    return `$${params.length}`;
  }

  column(key: string): string {
    const c = this.byKey.get(key);
    if (!c) throw new Error(`${this.table} has no column for ${key}`);
    return c.name;
  }

  /** INSERT of the record's fields (the ones it has), then `tail` (ON CONFLICT …, RETURNING …). */
  insert(record: Partial<T>, tail = ""): { text: string; params: unknown[] } {
    const params: unknown[] = [];
    const names: string[] = [];
    const values: string[] = [];
    for (const [key, value] of Object.entries(record)) {
      if (value === undefined || !this.byKey.has(key)) continue;
      names.push(this.column(key));
      values.push(this.param(key, value, params));
    }
    return {
      text: `INSERT INTO ${this.table} (${names.join(", ")}) VALUES (${values.join(", ")})${tail ? ` ${tail}` : ""}`,
      params,
    };
  }

  /** `col = $n, …` for the patch's defined fields, their values pushed onto `params`. */
  set(patch: Record<string, unknown>, params: unknown[]): string[] {
    const sets: string[] = [];
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      sets.push(`${this.column(key)} = ${this.param(key, value, params)}`);
    }
    return sets;
  }
}
