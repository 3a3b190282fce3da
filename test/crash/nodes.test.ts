/**
 * Several nodes on one PostgreSQL database (docs/architecture.md#several-nodes): two real
 * `agentowl serve` processes, SMTP into one and signed webhooks into the other, deliveries to one
 * receiver whose endpoint allows 2 in flight; then one node is SIGKILLed under load. The other
 * finishes the dead node's leased jobs once their lease (3 s here) expired and takes over its
 * singleton work. Afterwards, on the database: every acknowledged item is exactly one event,
 * every event one delivery, delivered and seen by the receiver, never more than 2 requests at
 * once at the receiver, the audit chain verifies, no job is left and every attachment's blob is
 * in the database.
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
  configure,
  Load,
  prng,
  Receiver,
  SERVE_ENV,
  stopGracefully,
  TENANT,
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

/** What is still to do, on the shared database. */
async function backlog(db: SQL): Promise<Record<string, number>> {
  const [r] = await db.unsafe(`SELECT
    (SELECT count(*) FROM mail_messages WHERE state = 'queued')::int AS mail_queued,
    (SELECT count(*) FROM jobs WHERE state IN ('available', 'leased'))::int AS jobs_open,
    (SELECT count(*) FROM deliveries WHERE state <> 'delivered')::int AS deliveries_open,
    (SELECT count(*) FROM events WHERE routing IS NULL)::int AS events_unrouted`);
  return r as Record<string, number>;
}

/** The crash suite's end-of-run checks (harness.ts checkDataDir), on the shared database. */
async function check(
  db: SQL,
  acks: readonly Ack[],
  receiver: Receiver,
): Promise<{ events: number; problems: string[] }> {
  const problems: string[] = [];
  const rows = (await db.unsafe(
    "SELECT id, idempotency_key AS key, binding, envelope #>> '{data,message_id}' AS mid, envelope -> 'data' -> 'attachments' AS att FROM events WHERE tenant = $1",
    [TENANT],
  )) as { id: string; key: string | null; binding: string; mid: string | null; att: { sha256?: string }[] | null }[];
  const byKey = new Map<string, string[]>();
  const wanted = new Set<string>();
  for (const e of rows) {
    const k = `${e.binding}/${e.binding === "mail" ? e.mid : e.key}`;
    byKey.set(k, [...(byKey.get(k) ?? []), e.id]);
    for (const a of e.att ?? []) if (a.sha256) wanted.add(a.sha256);
  }
  const eventIds = new Set(rows.map((r) => r.id));
  const mail = new Map(
    (
      (await db.unsafe("SELECT id, state, events FROM mail_messages")) as {
        id: string;
        state: string;
        events: string[] | null;
      }[]
    ).map((m) => [m.id, m]),
  );
  for (const a of acks) {
    if (a.k === "hook") {
      const ids = byKey.get(`hooks/${a.id}`) ?? [];
      if (ids.length !== 1 || ids[0] !== a.ack)
        problems.push(`acknowledged webhook ${a.id} (${a.ack}) is events [${ids}]`);
      continue;
    }
    const m = mail.get(a.ack!);
    if (!m || m.state !== "processed" || m.events?.length !== 1 || !eventIds.has(m.events[0]!))
      problems.push(`acknowledged message ${a.ack} (${a.id}): ${m ? `${m.state}, events ${m.events}` : "no row"}`);
    const ids = byKey.get(`mail/${a.id}`) ?? byKey.get(`mail/${a.id.slice(1, -1)}`) ?? [];
    if (ids.length !== 1) problems.push(`acknowledged message ${a.ack} (${a.id}) is ${ids.length} events`);
  }
  const deliveries = (await db.unsafe(
    "SELECT id, event_id, state FROM deliveries WHERE tenant = $1 AND replay_of IS NULL",
    [TENANT],
  )) as { id: string; event_id: string; state: string }[];
  const perEvent = new Map<string, number>();
  for (const d of deliveries) {
    perEvent.set(d.event_id, (perEvent.get(d.event_id) ?? 0) + 1);
    if (d.state !== "delivered") problems.push(`delivery ${d.id} is ${d.state}`);
    if (!receiver.seen.has(d.id)) problems.push(`delivery ${d.id} never reached the receiver`);
    else if (receiver.eventOf.get(d.id) !== d.event_id) problems.push(`delivery ${d.id} carried another event`);
  }
  for (const id of eventIds)
    if (perEvent.get(id) !== 1) problems.push(`event ${id} has ${perEvent.get(id) ?? 0} deliveries`);
  const known = new Set(deliveries.map((d) => d.id));
  for (const id of receiver.seen.keys())
    if (!known.has(id)) problems.push(`the receiver got ${id}, which is no delivery`);
  if (receiver.bad) problems.push(`${receiver.bad} deliveries with a bad signature`);
  for (const j of (await db.unsafe("SELECT id, kind, state, lease_owner FROM jobs WHERE state <> 'done'")) as Record<
    string,
    unknown
  >[])
    problems.push(`job ${j.id} (${j.kind}) is ${j.state} by ${j.lease_owner}`);
  const blobs = new Set(((await db.unsafe("SELECT sha256 FROM blobs")) as { sha256: string }[]).map((b) => b.sha256));
  for (const w of wanted) if (!blobs.has(w)) problems.push(`blob ${w} is referenced but not in the database`);
  return { events: eventIds.size, problems };
}

test.skipIf(skip)(
  "two nodes on one database: each acknowledged item once, each delivery once, max_in_flight across both; " +
    "a SIGKILLed node's leased jobs and singleton work move to the other",
  async () => {
    if (typeof pg === "string") return;
    const t0 = performance.now();
    const url = await pg.freshDatabase();
    const db = new SQL(url, { max: 2 });
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
          last = await backlog(db);
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
      const findings = await check(db, acks, receiver);
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
      await pg.drop(url).catch(() => {});
    }
  },
);
