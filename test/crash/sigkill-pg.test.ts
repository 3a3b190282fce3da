/**
 * The SIGKILL run (sigkill.ts) on PostgreSQL (a throw-away cluster, test/helpers/postgres.ts;
 * skipped with the reason printed when none can be started): 3 kills (CRASH_PG_KILLS; each is
 * followed by up to one singleton lease period, 15 s, before the relay routes again), a 3 s
 * visibility timeout, so the dead process's leased jobs come back within the run. Raw mail and
 * blobs are checked in the database.
 */
import { afterAll, afterEach, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testPostgres } from "../helpers/postgres.ts";
import { killLeftovers } from "../helpers/process.ts";
import { postgresStore } from "./harness.ts";
import { sigkillRun } from "./sigkill.ts";

const KILLS = Number(process.env.CRASH_PG_KILLS ?? 3);
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
setDefaultTimeout(60_000 + KILLS * 25_000);

const pg = await testPostgres();
const skip = typeof pg === "string";
if (skip) console.log(`SIGKILL tests on PostgreSQL skipped: ${pg}`);

const root = mkdtempSync(join(tmpdir(), "agentowl-crash-kill-pg-"));
afterEach(killLeftovers);
afterAll(async () => {
  rmSync(root, { recursive: true, force: true });
  if (typeof pg !== "string") await pg.stop();
});

test.skipIf(skip)(
  `on PostgreSQL, every item acknowledged under ${KILLS} SIGKILLs is exactly one event, every delivery is \
delivered, the audit log verifies, no raw mail or blob is missing`,
  async () => {
    if (typeof pg === "string") return;
    const url = await pg.freshDatabase();
    const store = postgresStore(url);
    try {
      await sigkillRun({
        root,
        kills: KILLS,
        seed: SEED,
        store,
        shared: true,
        env: { AGENTOWL_DATABASE_URL: url, AGENTOWL_QUEUE_VISIBILITY_TIMEOUT: "3s" },
      });
    } finally {
      await store.close().catch(() => {});
      await pg.drop(url).catch(() => {});
    }
  },
);
