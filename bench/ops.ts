/**
 * `npm run bench -- ops`: backups of a data dir with 100,000 events and 1 GiB of attachment blobs
 * (BENCH_OPS_EVENTS, BENCH_OPS_BLOB_MIB), taken while the appliance serves signed webhooks:
 *
 * - the backup's time (POST /v1/backups, at backup_max_rate or BENCH_OPS_MAX_RATE MiB/s) beside GNU tar
 *   archiving the same data dir's files, idle;
 * - the ingest rate during the backup beside the rate without it, same load, same run (target ≥ 80 %);
 * - `agentowl restore` into a fresh data dir beside GNU tar extracting the archive (no fsync);
 * - `agentowl serve` from spawn to /readyz 200 on the restored data dir, beside a fresh one.
 *
 * The appliance runs from source (`bun src/main.ts`), as the other benches do.
 */
import { Database } from "bun:sqlite";
import { spawn, spawnSync } from "bun";
import autocannon from "autocannon";
import { createHmac, randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { freePort, startAppliance } from "./common.ts";
import { figure, type SectionResult } from "./report.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const EVENTS = Number(process.env.BENCH_OPS_EVENTS ?? 100_000);
const BLOB_MIB = Number(process.env.BENCH_OPS_BLOB_MIB ?? 1024);
const ATTACHMENT_MIB = 4;
const BASELINE_S = Number(process.env.BENCH_OPS_BASELINE_SECONDS ?? 10);
/** The backup's write cap in MiB/s (POST /v1/backups {max_rate}); unset: the server's backup_max_rate. */
const MAX_RATE = process.env.BENCH_OPS_MAX_RATE;
const CONNECTIONS = 20;
const SECRET = `whsec_${Buffer.from("bench-ops-signing-secret-32-bytes").toString("base64")}`;
const KEY = Buffer.from(SECRET.slice("whsec_".length), "base64");
const BODY = JSON.stringify({ type: "ticket.created", ticket: { id: 4711, title: "Toner", tags: ["printer"] } });

let serial = 0;
/** Signed webhooks at CONNECTIONS connections: until `amount` were sent, or until stopped. */
function hooks(url: string, opts: { amount?: number; duration?: number }) {
  let stop: () => void = () => {};
  const done = new Promise<{ ok: number; seconds: number }>((resolve, reject) => {
    const t0 = performance.now();
    const inst = autocannon(
      {
        url,
        connections: CONNECTIONS,
        ...(opts.amount ? { amount: opts.amount } : { duration: opts.duration ?? 3600 }),
        method: "POST",
        headers: { "content-type": "application/json" },
        body: BODY,
        requests: [
          {
            setupRequest: (req: any) => {
              const id = `msg_ops_${process.pid}_${++serial}`;
              const ts = String(Math.floor(Date.now() / 1000));
              const sig = `v1,${createHmac("sha256", KEY).update(`${id}.${ts}.${BODY}`).digest("base64")}`;
              return {
                ...req,
                headers: { ...req.headers, "webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig },
              };
            },
          },
        ],
      },
      (err: Error | null, r: any) =>
        err ? reject(err) : resolve({ ok: r["2xx"], seconds: (performance.now() - t0) / 1000 }),
    );
    stop = () => (inst as unknown as { stop(): void }).stop();
  });
  return { done, stop: () => stop() };
}

const count = (dir: string, sql: string) => {
  const db = new Database(join(dir, "agentowl.db"), { readonly: true });
  try {
    return (db.query(sql).get() as { n: number }).n;
  } finally {
    db.close();
  }
};

function timed(cmd: string[], env: Record<string, string> = {}): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
  return (performance.now() - t0) / 1000;
}

/** `agentowl serve` on `dir`: ms from spawn to /readyz 200. */
async function readyMs(dir: string): Promise<number> {
  const [http, smtp] = [await freePort(), await freePort()];
  const t0 = performance.now();
  const proc = spawn([BUN, join(ROOT, "src/main.ts"), "serve"], {
    env: {
      ...process.env,
      AGENTOWL_DATA_DIR: dir,
      AGENTOWL_HTTP_LISTEN: `127.0.0.1:${http}`,
      AGENTOWL_SMTP_LISTEN: `127.0.0.1:${smtp}`,
      AGENTOWL_LOG_LEVEL: "warn",
    },
    stdout: "ignore",
    stderr: "inherit",
  });
  try {
    for (;;) {
      if (performance.now() - t0 > 60_000) throw new Error("not ready after 60 s");
      const ok = await fetch(`http://127.0.0.1:${http}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return performance.now() - t0;
      await Bun.sleep(5);
    }
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

export async function benchOps(): Promise<SectionResult> {
  const work = mkdtempSync(join(tmpdir(), "agentowl-bench-ops-"));
  const app = await startAppliance("ops", { AGENTOWL_BACKUP_KEEP: "0", AGENTOWL_WORKER_CONCURRENCY: "8" });
  const { dir } = app;
  try {
    await app.api("POST", "/v1/tenants", { name: "ops" });
    await app.api("PUT", "/v1/tenants/ops/secrets/hooks", { value: SECRET });
    await app.api("POST", "/v1/tenants/ops/bindings", {
      name: "hooks",
      type: "webhook",
      verify: { scheme: "standard-webhooks", secret: "vault:ops/hooks" },
    });
    await app.api("POST", "/v1/tenants/ops/bindings", { name: "mail", type: "email", addresses: ["inbox"] });

    // The data dir: BLOB_MIB of attachments (random: one blob each), then webhooks up to EVENTS.
    const t0 = performance.now();
    const mails = Math.ceil(BLOB_MIB / ATTACHMENT_MIB);
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: app.smtpPort,
      secure: false,
      ignoreTLS: true,
      pool: true,
      maxConnections: 4,
    });
    await Promise.all(
      Array.from({ length: mails }, (_, i) =>
        transport.sendMail({
          from: "bench@example.com",
          to: "inbox@ops.agentowl.lan",
          subject: `attachment ${i}`,
          text: "see attached",
          attachments: [{ filename: `a${i}.bin`, content: randomBytes(ATTACHMENT_MIB * 2 ** 20) }],
        }),
      ),
    );
    transport.close();
    await hooks(`${app.url}/ingress/webhook/ops/hooks`, { amount: EVENTS - mails }).done;
    const deadline = performance.now() + 600_000;
    while (count(dir, "SELECT count(*) AS n FROM events") < EVENTS) {
      if (performance.now() > deadline) throw new Error("the data dir never reached its events");
      await Bun.sleep(500);
    }
    const events = count(dir, "SELECT count(*) AS n FROM events");
    const blobBytes = Number(
      spawnSync(["du", "-sb", join(dir, "blobs")])
        .stdout.toString()
        .split("\t")[0],
    );
    console.log(
      `data dir: ${events} events, ${gib(blobBytes)} of blobs, database ${gib(statSync(join(dir, "agentowl.db")).size)} ` +
        `(made in ${((performance.now() - t0) / 1000).toFixed(0)} s)`,
    );

    // Ingest without a backup, then during one: the same load, the same server.
    const baseline = async () => {
      const b = await hooks(`${app.url}/ingress/webhook/ops/hooks`, { duration: BASELINE_S }).done;
      return b.ok / b.seconds;
    };
    const before = await baseline();

    const during = hooks(`${app.url}/ingress/webhook/ops/hooks`, {});
    const tb = performance.now();
    const res = await fetch(`${app.url}/v1/backups`, {
      method: "POST",
      headers: { authorization: `Bearer bench-ops-bootstrap-token-0000000000`, "content-type": "application/json" },
      body: JSON.stringify(MAX_RATE === undefined ? {} : { max_rate: Number(MAX_RATE) }),
    });
    const lines = (await res.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const backupS = (performance.now() - tb) / 1000;
    during.stop();
    const d = await during.done;
    const result = lines.at(-1)?.backup;
    if (!result) throw new Error(`backup failed: ${JSON.stringify(lines.at(-1))}`);
    const duringRate = d.ok / d.seconds;
    const after = await baseline();
    const baseRate = (before + after) / 2;
    console.log(
      `ingest without a backup: ${before.toFixed(0)} webhooks/s before it, ${after.toFixed(0)} after ` +
        `(${CONNECTIONS} connections, ${BASELINE_S} s each)`,
    );

    app.proc.kill("SIGTERM");
    await app.proc.exited;

    const tarRef = join(work, "ref.tar");
    const tarS = timed(["tar", "-cf", tarRef, "-C", dir, "agentowl.db", "blobs", "spool", "audit"]);
    rmSync(tarRef);
    const cap = MAX_RATE === undefined ? "backup_max_rate's default" : `${MAX_RATE} MiB/s`;
    console.log(
      `backup while serving (write cap: ${cap}): ${backupS.toFixed(1)} s for ${gib(result.bytes)} (${result.files} files); ` +
        `GNU tar of the same files, server stopped: ${tarS.toFixed(1)} s = ${(backupS / tarS).toFixed(2)}x tar`,
    );
    console.log(
      `ingest during the backup: ${duringRate.toFixed(0)} webhooks/s = ${((duringRate / baseRate) * 100).toFixed(0)}% ` +
        `of the rate without it (the mean of before and after; target ≥ 80%)`,
    );

    const restored = join(work, "restored");
    const restoreS = timed([BUN, join(ROOT, "src/main.ts"), "restore", result.path, "--data-dir", restored]);
    const extracted = join(work, "extracted");
    mkdirSync(extracted);
    const untarS = timed(["tar", "-xf", result.path, "-C", extracted]);
    rmSync(extracted, { recursive: true, force: true });
    console.log(
      `restore: ${restoreS.toFixed(1)} s (verified, fsynced, swapped); GNU tar -x of the archive (no fsync): ` +
        `${untarS.toFixed(1)} s = ${(restoreS / untarS).toFixed(2)}x tar`,
    );

    copyFileSync(join(dir, "master.key"), join(restored, "master.key"));
    const empty = join(work, "empty");
    const freshMs = await readyMs(empty);
    const restoredMs = await readyMs(restored);
    const again = await readyMs(restored);
    console.log(
      `start-up to /readyz 200 on the restored data dir: ${restoredMs.toFixed(0)} ms first, ${again.toFixed(0)} ms ` +
        `again; on a fresh data dir: ${freshMs.toFixed(0)} ms = ${(again / freshMs).toFixed(2)}x fresh`,
    );
    const data = `${events.toLocaleString("en-US")} events, ${gib(blobBytes)} of blobs`;
    return {
      section: "ops",
      figures: [
        figure(`backup while serving (${data})`, backupS, "s", {
          vs: [{ role: "reference", name: "GNU tar, server stopped", value: tarS }],
        }),
        figure("ingest during the backup", duringRate, "webhooks/s", {
          vs: [{ role: "reference", name: "without a backup", value: baseRate }],
        }),
        figure("restore (verified, fsynced, swapped)", restoreS, "s", {
          vs: [{ role: "reference", name: "GNU tar -x, no fsync", value: untarS }],
        }),
        figure("start-up to /readyz on the restored data dir, again", again, "ms", {
          vs: [{ role: "reference", name: "a fresh data dir", value: freshMs }],
        }),
      ],
      targets: [
        {
          name: "ingest during a backup / without",
          measured: (100 * duringRate) / baseRate,
          op: ">=",
          bound: 80,
          unit: "%",
        },
      ],
      notes: [`the backup's write cap: ${cap}`],
    };
  } finally {
    app.proc.kill("SIGTERM");
    await app.proc.exited;
    rmSync(dir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}
