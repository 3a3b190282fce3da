/**
 * Guarantees 1, 2 and 6 (docs/guarantees.md) under `kill -9`: a real `agentowl serve` takes SMTP (one message per
 * connection and several per reused connection) and signed webhooks from a separate load
 * process, and is SIGKILLed at random moments (seeded: CRASH_SEED replays a run; CRASH_KILLS
 * sets how many, 20 here, 100 in `npm run test:crash:long`), restarted each time on the same
 * data dir and ports. Afterwards: every acknowledged item is exactly one event, every event's
 * delivery was delivered (duplicates at the receiver counted and printed), every attempt was
 * audited, the audit log verifies, no spool segment or blob is orphaned, and after every restart
 * no job was still leased by a dead process.
 */
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killLeftovers, type Running, serveAgentowl, waitUntil } from "../helpers/process.ts";
import {
  ackCounts,
  attemptAudits,
  auditVerify,
  checkDataDir,
  configure,
  drained,
  leasedByOthers,
  Load,
  prng,
  readRecord,
  Receiver,
  SERVE_ENV,
  stopGracefully,
  TOKEN,
  type Ack,
} from "./harness.ts";

const KILLS = Number(process.env.CRASH_KILLS ?? 20);
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
setDefaultTimeout(60_000 + KILLS * 6_000);

const root = mkdtempSync(join(tmpdir(), "agentowl-crash-kill-"));
const dataDir = join(root, "data");
afterEach(killLeftovers);
afterAll(() => rmSync(root, { recursive: true, force: true }));

test(`every item acknowledged under ${KILLS} SIGKILLs is exactly one event, every delivery is delivered, the \
audit log verifies, nothing is orphaned`, async () => {
  const t0 = performance.now();
  console.log(`crash: seed ${SEED} (replay with CRASH_SEED=${SEED}), ${KILLS} kills`);
  const random = prng(SEED);
  const receiver = new Receiver(prng(SEED ^ 0x5eed));
  let load: Load | null = null;
  try {
    const first = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: SERVE_ENV });
    await configure(first.url, receiver.url);
    const httpPort = new URL(first.url).port;
    const listen = {
      ...SERVE_ENV,
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
        20_000,
        2,
      );
      server.proc.kill("SIGKILL");
      await server.exited;
      kills.push(`${onDeliveries ? "d" : "a"}${n}`);
      const next = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: listen });
      server = next.server;
      // Recovery ran before the server said it serves: a lease of a dead process is a lost job.
      const stale = leasedByOthers(dataDir, `pid:${server.pid}`);
      leasedAfterRestart += stale.length;
      expect(stale).toEqual([]);
    }
    const killedAt = performance.now();

    await load.stop();
    const fromFile = readRecord(record).filter((l) => l.ack) as unknown as Ack[];
    expect(fromFile.length).toBe(load.acks().length);
    await drained(dataDir);
    const url = `http://127.0.0.1:${httpPort}`;
    const verdict = await auditVerify(root, url);
    const audited = await attemptAudits(url);
    await stopGracefully(server);
    const findings = checkDataDir(dataDir, fromFile, receiver, audited);

    const duplicates = receiver.duplicates();
    console.log(
      `crash: ${KILLS} kills (${kills.join(" ")}) in ${Math.round((killedAt - t0) / 1000)} s; acks ${JSON.stringify(ackCounts(fromFile))}; ` +
        `refusals ${load.nacks().length}; load ${JSON.stringify(load.summary)}; events ${findings.events}; deliveries ${findings.deliveries} ` +
        `(receiver got ${receiver.deliveries}, ${duplicates.length} webhook-ids more than once${
          duplicates.length
            ? `: ${duplicates
                .slice(0, 10)
                .map(([id, c]) => `${id}×${c}`)
                .join(" ")}`
            : ""
        }); ` +
        `stale leases after restarts ${leasedAfterRestart}; unreferenced spool ` +
        `segments ${findings.unreferencedSegments.length ? findings.unreferencedSegments.join(", ") : "none"}; ` +
        `audit ${verdict.ok ? "intact" : "BROKEN"} (${verdict.entries} ` +
        `entries); ${Math.round((performance.now() - t0) / 1000)} s in all`,
    );
    expect(findings.problems).toEqual([]);
    // A killed process may leave a segment no row refers to (spooled, never committed, never
    // acknowledged); the next start removes it, so after the last clean stop there is none.
    expect(findings.unreferencedSegments).toEqual([]);
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
});
