import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storageContract } from "../../../test/store-contract.ts";
import { openSqliteStorage, type SqliteStorage } from "./index.ts";

// The conformance suite on a real database file (WAL, synchronous=FULL), as in production.
storageContract("sqlite", async ({ clock, random }) => {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-contract-"));
  const open = () => openSqliteStorage({ dir, clock, random });
  let current: SqliteStorage = open();
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
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
