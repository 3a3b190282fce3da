import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storageContract } from "../../../test/store-contract.ts";
import { testPostgres } from "../../../test/helpers/postgres.ts";
import { openPostgresStorage, type PostgresStorage } from "./index.ts";

// The same conformance suite as SQLite's, on a real PostgreSQL server (test/helpers/postgres.ts):
// a new database for every case.
const pg = await testPostgres();
if (typeof pg === "string") {
  console.log(`storage contract on PostgreSQL skipped: ${pg}`);
} else {
  storageContract("postgres", async ({ clock, random }) => {
    const dir = mkdtempSync(join(tmpdir(), "agentowl-contract-pg-"));
    const url = await pg.freshDatabase();
    const open = () => openPostgresStorage({ dir, url, clock, random });
    let current: PostgresStorage = open();
    const closeQuietly = async () => {
      await current.close().catch(() => {});
    };
    return {
      get storage() {
        return current;
      },
      clock,
      checkpointFile: join(dir, "audit", "checkpoints.jsonl"),
      async reopen() {
        await closeQuietly();
        current = open();
        return current;
      },
      async cleanup() {
        await closeQuietly();
        await pg.drop(url);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
}
afterAll(async () => {
  if (typeof pg !== "string") await pg.stop();
});
