/**
 * Backups under load (docs/operations.md#backups): a real `agentowl serve` takes SMTP and signed
 * webhooks from the load process while `agentowl backup FILE` runs through it; the archive is
 * restored into a fresh data dir (the master key copied apart, as the admin keeps it), an
 * appliance started on it, and every item acknowledged before the backup started must be there,
 * exactly one event each, delivered, with the audit chain verifying. A restore over the serving
 * data dir is refused.
 */
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killLeftovers, runAgentowl, serveAgentowl, waitUntil } from "../helpers/process.ts";
import {
  ackCounts,
  auditVerify,
  checkDataDir,
  configure,
  drained,
  Load,
  Receiver,
  SERVE_ENV,
  stopGracefully,
  TOKEN,
} from "./harness.ts";

setDefaultTimeout(180_000);
const root = mkdtempSync(join(tmpdir(), "agentowl-crash-backup-"));
afterEach(killLeftovers);
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("a backup taken under SMTP and webhook load restores into a fresh data dir with every item acknowledged \
before it, delivered, and the audit chain verifying; restore is refused while the server runs", async () => {
  const dataDir = join(root, "data");
  const receiver = new Receiver(() => 0.5);
  let load: Load | null = null;
  try {
    const { server, url, smtpPort } = await serveAgentowl({ cwd: root, dataDir, token: TOKEN, env: SERVE_ENV });
    await configure(url, receiver.url);
    load = new Load({
      smtpPort,
      httpUrl: url,
      out: join(root, "acks.jsonl"),
      run: "backup",
      smtpOnce: 2,
      smtpReuse: 2,
      perConnection: 5,
      hooks: 3,
      attachEvery: 3,
    });
    await waitUntil("300 acknowledgements", () => load!.acks().length >= 300, 60_000);
    const started = performance.now();
    const before = load.acks().filter((a) => a.seenAt <= started);
    const archive = join(root, "backup.tar");
    const env = { AGENTOWL_DATA_DIR: dataDir, AGENTOWL_URL: url, AGENTOWL_TOKEN: TOKEN };
    const backup = await runAgentowl(["backup", archive], { cwd: root, env, timeoutMs: 120_000 });
    expect(backup.code, backup.stderr).toBe(0);
    const during = load.acks().length - load.acks().filter((a) => a.seenAt <= started).length;
    expect(backup.stderr).toContain("backup: 100%");

    const refused = await runAgentowl(["restore", archive, "--data-dir", dataDir], { cwd: root });
    expect(refused.code).toBe(4);
    expect(refused.stderr.trim()).toBe(
      `agentowl restore: refusing to restore: a server holds ${dataDir} (stop it first)`,
    );

    await load.stop();
    load = null;
    await stopGracefully(server);

    const verified = await runAgentowl(["backup", "--verify", archive], { cwd: root });
    expect(verified.code, verified.stderr).toBe(0);

    const freshDir = join(root, "restored");
    const restored = await runAgentowl(["restore", archive, "--data-dir", freshDir], { cwd: root, timeoutMs: 60_000 });
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toContain("no master key at");
    copyFileSync(join(dataDir, "master.key"), join(freshDir, "master.key"));

    const second = await serveAgentowl({ cwd: root, dataDir: freshDir, token: TOKEN, env: SERVE_ENV });
    await drained(freshDir);
    const audit = await auditVerify(root, second.url);
    expect(audit.ok).toBe(true);
    await stopGracefully(second.server);

    const findings = checkDataDir(freshDir, before, receiver, null);
    // Deliveries of items acknowledged after the snapshot reached the receiver from the first
    // server; the restored data dir rightly knows nothing of them.
    const problems = findings.problems.filter((p) => !/^the receiver got webhook-id .* which is no delivery$/.test(p));
    console.log(
      `backup: ${JSON.stringify(ackCounts(before))} acknowledged before the backup, ${during} during it; ` +
        `restored ${findings.events} events, ${findings.deliveries} deliveries; audit ${audit.entries} entries; ` +
        `backup ${Math.round(backup.ms)} ms`,
    );
    expect(problems).toEqual([]);
    expect(findings.events).toBeGreaterThanOrEqual(before.length);
  } finally {
    load?.kill();
    receiver.stop();
  }
});
