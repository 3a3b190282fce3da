import { afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  openSqliteStorage,
  type SqliteStorage,
  type SqliteStorageOptions,
  type Storage,
} from "../../src/store/index.ts";

/** A real storage on a fresh temp data dir; `dispose` closes it and removes the dir. */
export function tempStorage(
  opts: Partial<SqliteStorageOptions> = {},
): SqliteStorage & { dir: string; dispose(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-test-"));
  const storage = openSqliteStorage({ dir, ...opts });
  return Object.assign(storage, {
    dir,
    async dispose() {
      await storage.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** Wait for a condition with a deadline: tests never sleep for a fixed time. */
export { waitUntil as until } from "./process.ts";

/** A maker of temp storages for one test file: each is closed and removed after every test. */
export function tempStorages(): (opts?: Partial<SqliteStorageOptions>) => ReturnType<typeof tempStorage> {
  const made: ReturnType<typeof tempStorage>[] = [];
  afterEach(async () => {
    for (const s of made.splice(0)) await s.dispose();
  });
  return (opts = {}) => {
    const s = tempStorage(opts);
    made.push(s);
    return s;
  };
}

/**
 * The appliance's storage as the SQLite driver, for end-to-end tests that read what it wrote
 * (rows, the raw database) beyond the contract's reads. Those tests run on SQLite only.
 */
export function sqliteOf(app: { storage: Storage }): SqliteStorage {
  if (app.storage.driver !== "sqlite") throw new Error(`this test reads SQLite, not ${app.storage.driver}`);
  return app.storage as SqliteStorage;
}
