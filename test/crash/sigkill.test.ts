/**
 * The SIGKILL run (sigkill.ts) on SQLite: 20 kills (CRASH_KILLS sets how many, 100 in
 * `npm run test:crash:long`; CRASH_SEED replays a run), and after every restart no job is still
 * leased by a dead process (the data dir's lock proves it dead, so start-up recovers them all).
 */
import { afterAll, afterEach, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killLeftovers } from "../helpers/process.ts";
import { sqliteStore } from "./harness.ts";
import { sigkillRun } from "./sigkill.ts";

const KILLS = Number(process.env.CRASH_KILLS ?? 20);
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
setDefaultTimeout(60_000 + KILLS * 6_000);

const root = mkdtempSync(join(tmpdir(), "agentowl-crash-kill-"));
afterEach(killLeftovers);
afterAll(() => rmSync(root, { recursive: true, force: true }));

test(`every item acknowledged under ${KILLS} SIGKILLs is exactly one event, every delivery is delivered, the \
audit log verifies, nothing is orphaned`, () =>
  sigkillRun({ root, kills: KILLS, seed: SEED, store: sqliteStore(join(root, "data")) }));
