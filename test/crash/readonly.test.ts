/**
 * Guarantee 1 (docs/guarantees.md) and the SMTP pipeline's answer to a failing disk
 * (docs/architecture.md#the-smtp-pipeline) when the data dir turns read-only under load, as a filesystem does after an
 * I/O error: the data dir of a real `agentowl serve` is a small ext4 filesystem that the test
 * turns read-only under the open database (ext4's errors=remount-ro) while the load process sends
 * mail and signed webhooks. Meanwhile SMTP answers 452 4.3.1 and webhooks 503 with Retry-After,
 * never an acknowledgement it cannot keep; after the disk is repaired (unmount, fsck, mount) and
 * the appliance started again, it takes load, and everything acknowledged before and after is
 * there, exactly once, delivered. Skips (saying so) where no loop device can be mounted.
 */
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Ext4Disk, mountExt4 } from "../helpers/mount.ts";
import { killLeftovers, serveAgentowl, waitUntil } from "../helpers/process.ts";
import {
  type Ack,
  ackCounts,
  attemptAudits,
  auditVerify,
  checkDataDir,
  configure,
  drained,
  Load,
  prng,
  readRecord,
  Receiver,
  SERVE_ENV,
  stopGracefully,
  TOKEN,
} from "./harness.ts";

setDefaultTimeout(110_000);

const root = mkdtempSync(join(tmpdir(), "agentowl-crash-readonly-"));
const dataDir = join(root, "data");
let disk: Ext4Disk | null = null;
afterEach(killLeftovers);
afterAll(() => {
  disk?.unmount();
  rmSync(root, { recursive: true, force: true });
});

test(`a data dir that turns read-only under load: 452 4.3.1 and 503 with Retry-After, nothing acknowledged \
lost, and after the repair everything is there once and load flows again`, async () => {
  disk = mountExt4(dataDir, join(root, "disk.img"), "96M");
  if (!disk) {
    console.warn(
      "skipped: cannot mount an ext4 loop device with its error trigger here (needs root, losetup and mkfs.ext4)",
    );
    return;
  }
  const t0 = performance.now();
  const receiver = new Receiver(prng(11));
  const loads: Load[] = [];
  try {
    let { server, url, smtpPort } = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: SERVE_ENV });
    await configure(url, receiver.url);
    const records = [join(root, "acks-before.jsonl"), join(root, "acks-after.jsonl")];
    let load = new Load({
      smtpPort,
      httpUrl: url,
      out: records[0]!,
      run: "ro1",
      smtpOnce: 2,
      smtpReuse: 2,
      perConnection: 5,
      hooks: 3,
      attachEvery: 3,
    });
    loads.push(load);
    const kinds = (acks: Ack[]) => new Set(acks.map((a) => (a.k === "hook" ? "hook" : "smtp")));
    const flowing = (what: string, l: Load) =>
      waitUntil(
        `${what}: mail and webhooks acknowledged`,
        () => kinds(l.acks()).size === 2 && l.acks().length >= 50,
        30_000,
      );
    await flowing("before", load);
    const before = ackCounts(load.acks());

    // The filesystem fails: read-only under the open database, spool and blobs.
    const since = performance.now();
    disk.failReadOnly();
    await waitUntil(
      "452 for mail and 503 for webhooks",
      () => {
        const n = load.nacks(since);
        return n.some((a) => a.k !== "hook" && a.nack === 452) && n.some((a) => a.k === "hook" && a.nack === 503);
      },
      30_000,
    );
    // Everything refused is a "try again later"; nothing is acknowledged that was not kept.
    const refused = load.nacks();
    for (const n of refused) {
      if (n.k === "hook") {
        expect(n.nack).toBe(503);
        expect(Number(n.retry_after)).toBeGreaterThan(0);
      } else expect(n.text).toMatch(/^452 4\.3\.1 /);
    }
    const readOnlyAcks = load.acks(since);
    await load.stop();
    // The appliance cannot close a database it cannot write cleanly: stop it however it goes.
    server.proc.kill("SIGTERM");
    await server.exit(20_000).catch(() => server.proc.kill("SIGKILL"));
    await server.exited;

    // The operator repairs the disk and starts the appliance again: it takes load.
    disk.repair();
    ({ server, url, smtpPort } = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: SERVE_ENV }));
    load = new Load({
      smtpPort,
      httpUrl: url,
      out: records[1]!,
      run: "ro2",
      smtpOnce: 2,
      smtpReuse: 2,
      perConnection: 5,
      hooks: 3,
      attachEvery: 3,
    });
    loads.push(load);
    await flowing("after the repair", load);
    await load.stop();

    const acks = records.flatMap((r) => readRecord(r).filter((l) => l.ack) as unknown as Ack[]);
    await drained(dataDir, 90_000);
    const verdict = await auditVerify(root, url);
    const audited = await attemptAudits(url);
    await stopGracefully(server);
    const findings = checkDataDir(dataDir, acks, receiver, audited);
    console.log(
      `crash/readonly: before ${JSON.stringify(before)} acks; read-only: ${refused.length} ` +
        `refusals (${[...new Set(refused.map((n) => `${n.k}:${n.nack}`))].join(", ")}), ${readOnlyAcks.length} ` +
        `acks after the failure (each checked below); ` +
        `in all ${JSON.stringify(ackCounts(acks))} acks; events ${findings.events}; deliveries ${findings.deliveries} (receiver got ${receiver.deliveries}); ` +
        `audit ${verdict.ok ? "intact" : "BROKEN"} (${verdict.entries} entries); ${Math.round((performance.now() - t0) / 1000)} s`,
    );
    expect(refused.length).toBeGreaterThan(0);
    expect(findings.problems).toEqual([]);
    expect(verdict.ok).toBe(true);
  } finally {
    for (const l of loads) l.kill();
    receiver.stop();
  }
});
