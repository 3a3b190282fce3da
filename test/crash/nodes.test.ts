/**
 * Several nodes on one PostgreSQL database (docs/architecture.md#several-nodes): two real
 * `agentowl serve` processes, SMTP into one and signed webhooks into the other, deliveries to one
 * receiver whose endpoint allows 2 in flight; then one node is SIGKILLed under load. The other
 * finishes the dead node's leased jobs once their lease (3 s here) expired and takes over its
 * singleton work. Afterwards, on the database: every acknowledged item is exactly one event,
 * every event one delivery, delivered and seen by the receiver, never more than 2 requests at
 * once at the receiver, the audit chain verifies, no job is left, every message's raw bytes and
 * every attachment's blob are in the database (harness.ts checkRows, through postgresStore).
 */
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { SQL } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testPostgres } from "../helpers/postgres.ts";
import { killLeftovers, serveAgentowl, waitUntil } from "../helpers/process.ts";
import {
  type Ack,
  ackCounts,
  auditVerify,
  checkStore,
  configure,
  Load,
  postgresStore,
  prng,
  Receiver,
  SERVE_ENV,
  stopGracefully,
  TOKEN,
} from "./harness.ts";

setDefaultTimeout(120_000);
const pg = await testPostgres();
const skip = typeof pg === "string";
if (skip) console.log(`several nodes tests skipped: ${pg}`);

const root = mkdtempSync(join(tmpdir(), "agentowl-nodes-"));
afterEach(killLeftovers);
afterAll(async () => {
  rmSync(root, { recursive: true, force: true });
  if (typeof pg !== "string") await pg.stop();
});

const MAX_IN_FLIGHT = 2;

test.skipIf(skip)(
  "two nodes on one database: each acknowledged item once, each delivery once, max_in_flight across both; " +
    "a SIGKILLed node's leased jobs and singleton work move to the other",
  async () => {
    if (typeof pg === "string") return;
    const t0 = performance.now();
    const url = await pg.freshDatabase();
    const db = new SQL(url, { max: 2 });
    const store = postgresStore(url);
    const receiver = new Receiver(prng(7));
    let load: Load | null = null;
    try {
      // One master key for both (the vault's secrets and the audit key are shared with the database).
      const env = {
        ...SERVE_ENV,
        AGENTOWL_DATABASE_URL: url,
        AGENTOWL_MASTER_KEY_FILE: join(root, "master.key"),
        AGENTOWL_QUEUE_VISIBILITY_TIMEOUT: "3s",
      };
      const a = await serveAgentowl({ cwd: root, dataDir: join(root, "a"), token: TOKEN, env });
      await configure(a.url, receiver.url, { max_in_flight: MAX_IN_FLIGHT });
      const b = await serveAgentowl({ cwd: root, dataDir: join(root, "b"), token: TOKEN, env });
      const started = performance.now();
      load = new Load({
        smtpPort: a.smtpPort,
        httpUrl: b.url,
        out: join(root, "acks.jsonl"),
        run: "nodes",
        smtpOnce: 2,
        smtpReuse: 2,
        perConnection: 5,
        hooks: 4,
        attachEvery: 4,
      });
      await waitUntil(
        "acknowledgements of both kinds and deliveries",
        () =>
          load!.acks().filter((x) => x.k === "hook").length >= 60 &&
          load!.acks().filter((x) => x.k !== "hook").length >= 30 &&
          receiver.deliveries >= 60,
        40_000,
        5,
      );
      const [leasedByA] = await db.unsafe(
        "SELECT count(*)::int AS n FROM jobs WHERE state = 'leased' AND lease_owner = $1",
        [`pid:${a.server.pid}`],
      );
      a.server.proc.kill("SIGKILL");
      await a.server.exited;
      const killedAt = performance.now();
      const hooksBefore = load.acks().filter((x) => x.k === "hook").length;
      await waitUntil(
        "more webhooks into the surviving node",
        () => load!.acks().filter((x) => x.k === "hook").length >= hooksBefore + 40,
        20_000,
        5,
      );
      await load.stop();
      let last: Record<string, number> = {};
      await waitUntil(
        "the surviving node to finish everything",
        async () => {
          last = await store.backlog();
          return Object.values(last).every((n) => n === 0);
        },
        40_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(last)}`);
      });
      const drainedAt = performance.now();
      // Every singleton lease the dead node held is the survivor's now (15 s lease).
      const holders = async () =>
        ((await db.unsafe("SELECT name, holder FROM singleton_leases")) as { name: string; holder: string }[]).filter(
          (l) => l.holder.includes(`:${a.server.pid}:`),
        );
      await waitUntil(
        "the dead node's singleton leases to move",
        async () => (await holders()).length === 0,
        25_000,
        200,
      );
      const [relay] = await db.unsafe("SELECT holder FROM singleton_leases WHERE name = 'outbox-relay'");
      const movedAt = performance.now();
      const verdict = await auditVerify(root, b.url);
      await stopGracefully(b.server);
      const acks = load.acks();
      const findings = await checkStore(store, acks, receiver, null);
      console.log(
        `nodes: acks ${JSON.stringify(ackCounts(acks))}; refusals ${load.nacks().length}; events ${findings.events}; ` +
          `receiver ${receiver.deliveries} (${receiver.duplicates().length} duplicates), at most ${receiver.maxInFlight} at once ` +
          `(limit ${MAX_IN_FLIGHT}); node a killed ${Math.round(killedAt - started)} ms into the load holding ${leasedByA!.n} ` +
          `leased jobs; survivor drained ${Math.round(drainedAt - killedAt)} ms after the kill, singleton leases ` +
          `moved by ${Math.round(movedAt - killedAt)} ms (relay: ${relay?.holder}); audit ${verdict.ok ? "intact" : "BROKEN"} ` +
          `(${verdict.entries} entries); ${Math.round((performance.now() - t0) / 1000)} s in all`,
      );
      expect(findings.problems).toEqual([]);
      expect(receiver.maxInFlight).toBeLessThanOrEqual(MAX_IN_FLIGHT);
      expect(verdict.ok).toBe(true);
      expect(relay?.holder).toContain(`:${b.server.pid}:`);
      expect(load.nacks()).toEqual([]);
    } finally {
      load?.kill();
      receiver.stop();
      await db.close().catch(() => {});
      await store.close().catch(() => {});
      await pg.drop(url).catch(() => {});
    }
  },
);
