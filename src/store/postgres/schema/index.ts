/**
 * The PostgreSQL schema: the same tables as src/store/schema/ (SQLite), column for column, with
 * PostgreSQL types (bigint milliseconds, jsonb, boolean, bytea, bigserial for the sequences).
 * drizzle-kit generates migrations-pg/ from it (drizzle.pg.config.ts). A change to one schema is
 * made to the other in the same commit.
 */
export * from "./approvals.ts";
export * from "./audit.ts";
export * from "./control.ts";
export * from "./events.ts";
export * from "./queue.ts";
export * from "./vault.ts";
export * from "./mail.ts";
export * from "./users.ts";
export * from "./agents.ts";
export * from "./shared.ts";
