import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPostgresStorage, type PostgresStorage } from "../../src/store/postgres/index.ts";
import type { TestPostgres } from "./postgres.ts";

/** The PostgreSQL storage on a new empty database of the test server, with a data dir of its own; `cleanup` closes it and drops both. */
export async function freshPgStorage(
  pg: TestPostgres | string,
  prefix: string,
): Promise<{ s: PostgresStorage; cleanup(): Promise<void> }> {
  if (typeof pg === "string") throw new Error(pg);
  const url = await pg.freshDatabase();
  const dir = mkdtempSync(join(tmpdir(), `agentowl-${prefix}-`));
  const s = openPostgresStorage({ dir, url });
  return {
    s,
    async cleanup() {
      await s.close().catch(() => {});
      await pg.drop(url);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
