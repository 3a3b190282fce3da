/**
 * Guarantee 1 (docs/guarantees.md) and the SMTP pipeline's answer to a failing disk
 * (docs/architecture.md#the-smtp-pipeline) when the disk fails under load: the whole data dir of a real
 * `agentowl serve` is a small tmpfs that the test fills up (ENOSPC) while the load process sends
 * mail and signed webhooks. Meanwhile SMTP answers 452 4.3.1 and webhooks 503 with Retry-After;
 * once space returns (the filler deleted) the server takes load again by itself, without a
 * restart; and everything acknowledged before, during and after is there, exactly once,
 * delivered. Skips (saying so) where no tmpfs can be mounted. A data dir that turns read-only is
 * readonly.test.ts.
 */
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mountTmpfs } from "../helpers/mount.ts";
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

const root = mkdtempSync(join(tmpdir(), "agentowl-crash-disk-"));
const dataDir = join(root, "data");
let unmount: (() => void) | null = null;
afterEach(killLeftovers);
afterAll(() => {
  unmount?.();
  rmSync(root, { recursive: true, force: true });
});

/** Write a file until the disk is full; returns its path and size. */
function fill(dir: string): { path: string; bytes: number } {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  let bytes = 0;
  try {
    for (const chunk of [1 << 20, 1 << 16, 4096, 512]) {
      const buf = new Uint8Array(chunk);
      for (;;) {
        try {
          bytes += writeSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return { path, bytes };
}

test(`a full data dir under load: 452 4.3.1 and 503 with Retry-After, nothing acknowledged lost, and the \
server takes load again by itself once the disk has room`, async () => {
  unmount = mountTmpfs(dataDir, "64m");
  if (!unmount) {
    console.warn("skipped: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
    return;
  }
  const t0 = performance.now();
  const receiver = new Receiver(prng(7));
  let load: Load | null = null;
  try {
    // A job whose failure could not be recorded on the full disk keeps its lease until the
    // visibility timeout (5 min by default) and is then recovered: 10 s here.
    const { server, url, smtpPort } = await serveAgentowl({
      cwd: root,
      dataDir,
      token: TOKEN,
      env: { ...SERVE_ENV, AGENTOWL_QUEUE_VISIBILITY_TIMEOUT: "10s" },
    });
    await configure(url, receiver.url);
    const record = join(root, "acks.jsonl");
    load = new Load({
      smtpPort,
      httpUrl: url,
      out: record,
      run: "disk",
      smtpOnce: 2,
      smtpReuse: 2,
      perConnection: 5,
      hooks: 3,
      attachEvery: 3,
    });
    const kinds = (acks: Ack[]) => new Set(acks.map((a) => (a.k === "hook" ? "hook" : "smtp")));
    /** Load flows: acknowledgements of mail and of webhooks since `since`. */
    const flowing = (what: string, since: number) =>
      waitUntil(
        `${what}: mail and webhooks acknowledged`,
        () => kinds(load!.acks(since)).size === 2 && load!.acks(since).length >= 50,
        30_000,
      );
    /** The disk refuses: 452 for mail and 503 for webhooks since `since`. */
    const refusing = async (what: string, since: number) => {
      await waitUntil(
        `${what}: 452 for mail and 503 for webhooks`,
        () => {
          const n = load!.nacks(since);
          return n.some((a) => a.k !== "hook" && a.nack === 452) && n.some((a) => a.k === "hook" && a.nack === 503);
        },
        30_000,
      );
      return load!.nacks(since);
    };
    const phases: string[] = [];
    const phase = (name: string, since: number) =>
      phases.push(
        `${name}: ${JSON.stringify(ackCounts(load!.acks(since)))} acks, ${load!.nacks(since).length} refusals`,
      );

    let since = performance.now();
    await flowing("before", since);
    phase("before", since);

    // The disk fills up.
    since = performance.now();
    const filler = fill(dataDir);
    const full = await refusing("full disk", since);
    phase(`full (${filler.bytes >> 20} MiB filler)`, since);

    // Space returns: no restart, the server takes load again.
    unlinkSync(filler.path);
    since = performance.now();
    await flowing("space back", since);
    phase("space back", since);

    const errors = new Map<string, number>();
    for (const l of server.logs.filter((l) => l.level === "error" || l.level === "warn")) {
      const detail =
        l.err ?? l.detail ?? (l.error === undefined ? "" : { stage: l.stage, error: l.error, code: l.code });
      const key = `${l.msg}: ${JSON.stringify(detail).slice(0, 300)}`;
      errors.set(key, (errors.get(key) ?? 0) + 1);
    }
    console.log(
      `crash/disk: server errors and warnings while the disk failed:\n  ${[...errors].map(([k, n]) => `${n}× ${k}`).join("\n  ")}`,
    );
    // Every refusal is a "try again later": 503 with Retry-After for webhooks; 452 4.3.1 for mail
    // (a full database as well as a full spool: 451 4.3.0 would say "our bug", not "no room").
    expect(full.length).toBeGreaterThan(0);
    for (const n of load.nacks()) {
      if (n.k === "hook") {
        expect(n.nack).toBe(503);
        expect(Number(n.retry_after)).toBeGreaterThan(0);
      } else expect(n.text).toMatch(/^452 4\.3\.1 /);
    }

    await load.stop();
    const acks = readRecord(record).filter((l) => l.ack) as unknown as Ack[];
    await drained(dataDir, 90_000);
    const verdict = await auditVerify(root, url);
    const audited = await attemptAudits(url);
    await stopGracefully(server);
    const findings = checkDataDir(dataDir, acks, receiver, audited);
    const duplicates = receiver.duplicates();
    console.log(
      `crash/disk: ${phases.join("; ")}; in all ${JSON.stringify(ackCounts(acks))} acks, refusals ${JSON.stringify(load.summary?.nack)}; ` +
        `events ${findings.events}; deliveries ${findings.deliveries} (receiver got ${receiver.deliveries}, ${duplicates.length} more than once); ` +
        `unreferenced spool segments ${findings.unreferencedSegments.length}; ` +
        `audit ${verdict.ok ? "intact" : "BROKEN"} (${verdict.entries} ` +
        `entries); ${Math.round((performance.now() - t0) / 1000)} s`,
    );
    expect(findings.problems).toEqual([]);
    expect(verdict.ok).toBe(true);
  } finally {
    load?.kill();
    receiver.stop();
  }
});
