/**
 * Guarantees 1, 2 and 6 (docs/guarantees.md) under `kill -9`, on either storage driver
 * (sigkill.test.ts: SQLite, sigkill-pg.test.ts: PostgreSQL): a real `agentowl serve` takes SMTP
 * (one message per connection and several per reused connection) and signed webhooks from a
 * separate load process, and is SIGKILLed at random moments (seeded: CRASH_SEED replays a run),
 * restarted each time on the same data dir, database and ports. Afterwards: every acknowledged
 * item is exactly one event, every event's delivery was delivered (duplicates at the receiver
 * counted and printed), every attempt was audited, the audit log verifies, no stored raw mail or
 * blob is orphaned or missing, and no job is left.
 */
import { expect } from "bun:test";
import { join } from "node:path";
import { type Running, serveAgentowl, waitUntil } from "../helpers/process.ts";
import {
  type Ack,
  ackCounts,
  attemptAudits,
  auditVerify,
  checkStore,
  configure,
  type CrashStore,
  drained,
  Load,
  prng,
  Receiver,
  readRecord,
  SERVE_ENV,
  stopGracefully,
  TOKEN,
} from "./harness.ts";

export interface SigkillRun {
  /** Holds the data dir, the record and the master key. */
  root: string;
  kills: number;
  seed: number;
  store: CrashStore;
  /** More settings of every server (the database URL). */
  env?: Record<string, string>;
  /**
   * Whether a restarted server may still see the dead process's leases: on a shared database
   * start-up recovers only expired ones (docs/architecture.md#several-nodes), and the dead
   * process's singleton leases hold the outbox relay until they expire, so a kill is followed by
   * a pause of up to one singleton lease period.
   */
  shared?: boolean;
}

/** One run: `kills` SIGKILLs under load, then the drain and every check; fails the test on a broken guarantee. */
export async function sigkillRun(opts: SigkillRun): Promise<void> {
  const { root, kills: KILLS, seed: SEED, store } = opts;
  const dataDir = join(root, "data");
  const t0 = performance.now();
  console.log(`crash (${store.name}): seed ${SEED} (replay with CRASH_SEED=${SEED}), ${KILLS} kills`);
  const random = prng(SEED);
  const receiver = new Receiver(prng(SEED ^ 0x5eed));
  let load: Load | null = null;
  try {
    const env = { ...SERVE_ENV, ...opts.env };
    const first = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env });
    await configure(first.url, receiver.url);
    const httpPort = new URL(first.url).port;
    const listen = {
      ...env,
      AGENTOWL_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
      AGENTOWL_SMTP_LISTEN: `127.0.0.1:${first.smtpPort}`,
    };
    const record = join(root, "acks.jsonl");
    load = new Load({
      smtpPort: first.smtpPort,
      httpUrl: first.url,
      out: record,
      run: `s${SEED}`,
      smtpOnce: 3,
      smtpReuse: 3,
      perConnection: 5,
      hooks: 4,
      attachEvery: 4,
    });

    let server: Running = first.server;
    const kills: string[] = [];
    let leasedAfterRestart = 0;
    for (let i = 0; i < KILLS; i++) {
      // A random moment: after a random number of acknowledgements, or of deliveries (then
      // deliveries are in flight), since this server came up.
      const since = performance.now();
      const deliveredBefore = receiver.deliveries;
      const n = 1 + Math.floor(random() * 40);
      const onDeliveries = random() < 0.4;
      await waitUntil(
        onDeliveries ? `${n} deliveries` : `${n} acknowledgements`,
        () => (onDeliveries ? receiver.deliveries - deliveredBefore >= n : load!.acks(since).length >= n),
        // After a kill on a shared database, routing waits for the dead process's singleton lease (15 s).
        opts.shared ? 45_000 : 20_000,
        2,
      );
      server.proc.kill("SIGKILL");
      await server.exited;
      kills.push(`${onDeliveries ? "d" : "a"}${n}`);
      const next = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: listen });
      server = next.server;
      const stale = await store.leasedByOthers(`pid:${server.pid}`);
      leasedAfterRestart += stale.length;
      // On SQLite recovery ran before the server said it serves: a lease of a dead process is a
      // lost job. On a shared database those leases come back when they expire (the end's
      // "no job left" and "every delivery delivered" hold them to it).
      if (!opts.shared) expect(stale).toEqual([]);
    }
    const killedAt = performance.now();

    await load.stop();
    const fromFile = readRecord(record).filter((l) => l.ack) as unknown as Ack[];
    expect(fromFile.length).toBe(load.acks().length);
    await drained(store);
    const url = `http://127.0.0.1:${httpPort}`;
    const verdict = await auditVerify(root, url);
    const audited = await attemptAudits(url);
    await stopGracefully(server);
    const findings = await checkStore(store, fromFile, receiver, audited);

    const duplicates = receiver.duplicates();
    console.log(
      `crash (${store.name}): ${KILLS} kills (${kills.join(" ")}) in ${Math.round((killedAt - t0) / 1000)} s; acks ${JSON.stringify(ackCounts(fromFile))}; ` +
        `refusals ${load.nacks().length}; load ${JSON.stringify(load.summary)}; events ${findings.events}; deliveries ${findings.deliveries} ` +
        `(receiver got ${receiver.deliveries}, ${duplicates.length} webhook-ids more than once${
          duplicates.length
            ? `: ${duplicates
                .slice(0, 10)
                .map(([id, c]) => `${id}×${c}`)
                .join(" ")}`
            : ""
        }); ` +
        `leases of dead processes after restarts ${leasedAfterRestart}; unreferenced raw mail ` +
        `${findings.unreferencedSegments.length ? findings.unreferencedSegments.join(", ") : "none"}; ` +
        `audit ${verdict.ok ? "intact" : "BROKEN"} (${verdict.entries} ` +
        `entries); ${Math.round((performance.now() - t0) / 1000)} s in all`,
    );
    expect(findings.problems).toEqual([]);
    // A killed process may leave a segment no row refers to (spooled, never committed, never
    // acknowledged); on SQLite the next start removes it, so after the last clean stop there is
    // none. On a shared database spool retention removes it (start-up cannot: another node may
    // be between its two commits); it was printed above.
    if (!opts.shared) expect(findings.unreferencedSegments).toEqual([]);
    expect(verdict.ok).toBe(true);
    // Only the load's own refusals would be a failure here: no limit or disk problem is in play.
    expect(load.nacks()).toEqual([]);
    expect(fromFile.filter((a) => a.k === "smtp1").length).toBeGreaterThan(0);
    expect(fromFile.filter((a) => a.k === "smtpN").length).toBeGreaterThan(0);
    expect(fromFile.filter((a) => a.k === "hook").length).toBeGreaterThan(0);
  } finally {
    load?.kill();
    receiver.stop();
  }
}
