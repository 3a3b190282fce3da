import { join } from "node:path";
import type { AnyElysia } from "elysia";
import cron from "node-cron";
import type { Config } from "../config/index.ts";
import { type JobHandler, JobRunner } from "../workers/job-runner.ts";
import { type Logger, type LogTap, Redactor } from "../core/log.ts";
import { LoopLagMonitor } from "../core/loop-lag.ts";
import { Metrics } from "../core/metrics.ts";
import { OutboxRelay, type Subscriber } from "../workers/outbox-relay.ts";
import { seedBootstrapToken } from "../api/auth.ts";
import { v1Api } from "../api/v1.ts";
import { ingressRoutes } from "../ingress/http/index.ts";
import type { EventRouting } from "../events/handoff.ts";
import { DELIVERY_JOB, dispatcher } from "../dispatch/dispatcher.ts";
import { type Clock, type Random, systemClock } from "../core/clock.ts";
import { createHttpApp, type ReadyCheck } from "../server/server.ts";
import { servePlain } from "../server/plain.ts";
import { fingerprintOf, isLoopback, servesHttps } from "../server/tls.ts";
import { SpecCache } from "../control/resources/cache.ts";
import type { BindingSpec } from "../control/resources/specs.ts";
import { parseListen } from "../config/index.ts";
import { createDnsResolver } from "../mail/dns.ts";
import { loadTls, MAIL_PROCESS_JOB, SmtpIngress, Spool } from "../ingress/smtp/index.ts";
import { mailProcessor } from "../mail/process.ts";
import { BlobStore } from "../store/index.ts";
import { lockDataDir, openSqliteStorage, prepareDataDir, type SqliteStorage } from "../store/index.ts";
import { anchorAuditLog, keyFiles } from "../audit/anchor.ts";
import { keyringOf, loadKeyring, loadMasterKey, masterKeySource } from "../vault/crypto.ts";
import { Vault } from "../vault/vault.ts";
import { COMMIT, VERSION } from "../version.ts";

export interface AppOptions {
  config: Config;
  log: Logger;
  /** Where /v1/logs/tail reads live log lines; the logger's sink must publish to it. */
  logTap?: LogTap;
  /** The redactor behind `log`: every secret the process learns (vault values, tokens) goes here. */
  redactor?: Redactor;
  /** Job kinds this process works on (later issues register theirs here). */
  handlers?: ReadonlyMap<string, JobHandler>;
  /** Outbox subscribers besides the built-in metrics one. */
  subscribers?: readonly Subscriber[];
  clock?: Clock;
  random?: Random;
}

export interface App {
  /** Base URL of the HTTP listener, e.g. https://10.0.0.2:8080 (http:// on loopback unless http_tls says on). */
  readonly url: string;
  /** Base URL of the plain-HTTP listener (http_plain_listen), when there is one. */
  readonly plainUrl: string | null;
  /** Where the SMTP listener listens (the port is the bound one when the setting said 0). */
  readonly smtp: { host: string; port: number };
  readonly storage: SqliteStorage;
  readonly metrics: Metrics;
  readonly http: AnyElysia;
  readonly redactor: Redactor;
  readonly vault: Vault;
  /** Routing at an event's commit (src/events/handoff.ts), as the ingresses use it. */
  readonly routing: EventRouting;
  /** Graceful stop: refuse new work, drain in-flight requests and jobs, close the database. */
  stop(): Promise<{ forced: boolean }>;
}

const READY_WRITE_TIMEOUT_MS = 2000;
const STALE_HEARTBEAT_MS = 10_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, Bun.sleep(ms).then(() => Promise.reject(new Error(`${what} took longer than ${ms} ms`)))]);
}

/**
 * What start-up has acquired so far (the data dir's lock, the database, workers, timers,
 * listeners), undone in reverse order when a later step fails: one stack instead of a copy of the
 * clean-up on every error path.
 */
class Acquired {
  private readonly undo: (() => unknown)[] = [];

  add<T>(value: T, release: (value: T) => unknown): T {
    this.undo.push(() => release(value));
    return value;
  }

  async release(): Promise<void> {
    for (const fn of this.undo.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // Undoing the rest matters more than how one of them failed.
      }
    }
  }
}

/** The composition root of `agentowl serve`: storage, workers, maintenance and the HTTP listener. */
export async function startApp(opts: AppOptions): Promise<App> {
  const acquired = new Acquired();
  try {
    return await start(opts, acquired);
  } catch (e) {
    await acquired.release();
    throw e;
  }
}

async function start(opts: AppOptions, acquired: Acquired): Promise<App> {
  const { config, log } = opts;
  const redactor = opts.redactor ?? new Redactor();
  redactor.learn(config.bootstrapToken);
  const tightened = prepareDataDir(config.dataDir, { files: keyFiles(config.masterKeyFile) });
  if (tightened.length) log.warn("made files in the data dir private: others could read them", { paths: tightened });
  const lock = acquired.add(lockDataDir(config.dataDir), (l) => l.release());
  const metrics = new Metrics();
  const storage: SqliteStorage = acquired.add(
    openSqliteStorage({
      dir: config.dataDir,
      windowMs: config.commitWindowMs,
      maxBatch: config.commitMaxBatch,
      clock: opts.clock,
      random: opts.random,
      onCommit: metrics.observeCommit,
    }),
    (s) => s.close(),
  );
  storage.checkpointInBackground((message) => log.error("WAL checkpoint", { detail: message }));
  if (storage.migration.applied.length)
    log.info("database migrated", { applied: storage.migration.applied, version: storage.migration.version });
  metrics.watchQueue(storage.queue);

  const clock = opts.clock ?? systemClock;
  // `agentowl init` creates the master key; a first `serve` without init does the same.
  let vault: Vault;
  {
    const source = masterKeySource(config.masterKeyFile);
    const { ring, created } = source.credential
      ? { ring: keyringOf(loadMasterKey(source.path)), created: false }
      : loadKeyring(source.path);
    if (created) log.info("vault master key created", { file: source.path });
    if (source.credential) log.info("vault master key from a systemd credential", { credential: source.path });
    // The audit chain is keyed and anchored before the first audited write (the bootstrap token's).
    anchorAuditLog(storage.audit, {
      dataDir: config.dataDir,
      masterKeyFile: config.masterKeyFile,
      master: ring.sealing,
      credential: source.credential,
      ...config.auditCheckpoint,
      log,
    });
    await seedBootstrapToken(storage.tokens, config.bootstrapToken, clock, log);
    vault = new Vault(storage, ring, redactor, clock, source.credential ? null : source.path);
    if (ring.rotating) {
      log.warn("a master-key rotation was interrupted: resuming it");
      void vault.rotateMaster({ actor: "system" }).then(
        (r) => log.info("master-key rotation finished", { rewrapped: r.rewrapped }),
        (e) => log.error("master-key rotation failed", { err: e }),
      );
    }
  }

  // The SMTP pipeline's parts: the certificate STARTTLS presents, the spool, attachments, DNS.
  let tls;
  try {
    tls = await loadTls(config, clock);
  } catch (e) {
    throw new Error(`cannot read the TLS certificate or key: ${(e as Error).message}`, { cause: e });
  }
  if (tls.source === "generated") log.info("self-signed TLS certificate created", { cert: tls.certPath });
  const spool = acquired.add(new Spool(join(config.dataDir, "spool"), clock), (s) => s.close());
  const blobs = new BlobStore(join(config.dataDir, "blobs"));
  // A put cut off by a crash left its temp file; the lock says no other process is writing one.
  const temps = blobs.removeTemps();
  if (temps) log.info("removed unfinished attachment files", { files: temps });
  // Segments no message row refers to hold only mail that was never acknowledged (a process
  // killed between a segment's fsync and the commit of its rows, a disk that filled up): no 250
  // was sent for any of it, so the senders send it again.
  const orphans = spool.removeUnreferenced(storage.mail.spoolSegments());
  if (orphans.segments)
    log.info("removed spool segments no message refers to", { segments: orphans.segments, bytes: orphans.bytes });
  const resolver = createDnsResolver({
    servers: config.dnsServers ? [...config.dnsServers] : undefined,
    timeoutMs: config.dnsTimeoutMs,
    clock,
  });
  const handlers = new Map(opts.handlers ?? []);
  const dispatch = dispatcher({
    storage,
    vault,
    owner: `pid:${process.pid}`,
    visibilityMs: config.visibilityTimeoutMs,
    workers: config.workerConcurrency,
  });
  handlers.set(
    MAIL_PROCESS_JOB,
    mailProcessor({ storage, spool, blobs, resolver, metrics, routing: dispatch.inline, clock }),
  );
  handlers.set(DELIVERY_JOB, dispatch.run);
  metrics.watchCircuits(() => dispatch.breakers.troubled());

  // Jobs leased by a previous process that died are ours to finish, now: the data dir's lock
  // says no other process of this appliance is alive, so no lease is still being worked on.
  const recovered = await storage.queue.recoverExpired({ all: true });
  if (recovered) log.info("recovered jobs whose lease expired", { jobs: recovered });

  const runner = new JobRunner({
    queue: storage.queue,
    handlers,
    log: log.child({ component: "jobs" }),
    concurrency: config.workerConcurrency,
    visibilityMs: config.visibilityTimeoutMs,
    owner: `pid:${process.pid}`,
    onOutcome: (kind, outcome, seconds) => {
      metrics.jobs.inc({ kind, outcome });
      metrics.jobSeconds.observe({ kind }, seconds);
    },
  });
  // Outbox entries are counted as they commit. Earlier builds counted them with a "metrics"
  // subscriber that read the whole log: its cursor goes, or it would hold back the retention purge.
  storage.outbox.onCommitted((topic) => metrics.outboxEvents.inc({ topic }));
  await storage.outbox.forget("metrics");
  const relay = new OutboxRelay(
    storage.outbox,
    [dispatch.router, dispatch.approvals, dispatch.endpointChanges, ...(opts.subscribers ?? [])],
    log.child({ component: "outbox" }),
  );
  runner.start();
  acquired.add(runner, (r) => r.stop(0));
  relay.start();
  acquired.add(relay, (r) => r.stop());

  // Maintenance: expired leases often (a dead worker's jobs should not wait long), retention hourly.
  const recoverEvery = Math.max(1000, Math.min(30_000, Math.floor(config.visibilityTimeoutMs / 4)));
  const recoverTimer = setInterval(() => {
    storage.queue.recoverExpired().then(
      (n) => n && log.info("recovered jobs whose lease expired", { jobs: n }),
      (e) => log.error("lease recovery failed", { err: e }),
    );
  }, recoverEvery);
  acquired.add(recoverTimer, clearInterval);
  // Approvals nobody decided in time take their declared outcome.
  const expiryTimer = setInterval(() => {
    storage.approvals.expireDue().then(
      (n) => n && log.info("approvals expired", { approvals: n }),
      (e) => log.error("approval expiry failed", { err: e }),
    );
  }, 5000);
  acquired.add(expiryTimer, clearInterval);
  const retention = cron.schedule(
    "17 * * * *",
    async () => {
      const jobs = await storage.queue.sweep(config.retentionMs);
      const outbox = await storage.outbox.purge(config.retentionMs);
      const spooled = spool.purge(Date.now() - config.spoolRetentionMs);
      log.info("retention sweep", {
        ...jobs,
        outbox_purged: outbox,
        spool_segments_purged: spooled.segments,
        spool_bytes_purged: spooled.bytes,
      });
    },
    { name: "retention", noOverlap: true },
  );
  acquired.add(retention, (t) => t.destroy());

  // Rotation reminders (docs/api.md#vault): every morning, and once at start, name the secrets whose
  // declared rotation period runs out within a week, in the log and on the outbox.
  const remind = async () => {
    for (const s of await vault.dueForRotation(7 * 86_400_000)) {
      const overdue = s.rotationDueAt! <= clock.now();
      log.warn(overdue ? "secret rotation overdue" : "secret rotation due soon", {
        tenant: s.tenant,
        scope: `${s.tenant}/${s.name}`,
        version: s.version,
        due_at: new Date(s.rotationDueAt!).toISOString(),
      });
      await storage.outbox.emit({
        topic: "secret.rotation_due",
        tenant: s.tenant,
        payload: { name: s.name, version: s.version, due_at: s.rotationDueAt, overdue },
      });
    }
  };
  const reminders = acquired.add(
    cron.schedule("0 9 * * *", remind, { name: "secret-rotation-reminders", noOverlap: true }),
    (t) => t.destroy(),
  );
  void remind().catch((e) => log.error("rotation reminders failed", { err: e }));

  let stopping = false;
  const ready = async (): Promise<Record<string, ReadyCheck>> => {
    const now = Date.now();
    const database: ReadyCheck = await withTimeout(storage.probeWrite(), READY_WRITE_TIMEOUT_MS, "a durable write")
      .then(() => ({ ok: true }))
      .catch((e: Error) => ({ ok: false, detail: `database not writable: ${e.message}` }));
    const alive = (beat: number): ReadyCheck =>
      now - beat < STALE_HEARTBEAT_MS ? { ok: true } : { ok: false, detail: `no heartbeat for ${now - beat} ms` };
    return {
      accepting: stopping ? { ok: false, detail: "shutting down" } : { ok: true },
      database,
      jobs: alive(runner.heartbeat),
      outbox: alive(relay.heartbeat),
    };
  };

  const http = createHttpApp({ log: log.child({ component: "http" }), metrics, version: `${VERSION}+${COMMIT}`, ready })
    .use(v1Api({ storage, clock, vault, dispatch, logTap: opts.logTap ?? null }))
    .use(
      ingressRoutes({
        config,
        storage,
        vault,
        metrics,
        log: log.child({ component: "ingress" }),
        routing: dispatch.inline,
        clock,
      }),
    );
  // docs/api.md: HTTPS with the STARTTLS certificate, plain HTTP on loopback (http_tls) and on the
  // optional plain listener, which serves the same app to loopback and opted-in webhooks only.
  const https = servesHttps(config.settings.http_tls, config.http.host);
  const plainListen = config.settings.http_plain_listen ? parseListen(config.settings.http_plain_listen) : null;
  const fingerprint = fingerprintOf(tls.cert);
  let plain: ReturnType<typeof servePlain> | null = null;
  const hostOf = (h: string | undefined) => (h?.includes(":") ? `[${h}]` : h);
  let url: string;
  let listening = config.settings.http_listen;
  try {
    // Elysia turns SO_REUSEPORT on, which would let a second appliance share the port silently.
    http.listen({
      hostname: config.http.host,
      port: config.http.port,
      reusePort: false,
      ...(https ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    });
    url = `${https ? "https" : "http"}://${hostOf(http.server!.hostname)}:${http.server!.port}`;
    if (plainListen) {
      listening = config.settings.http_plain_listen!;
      const bindings = new SpecCache<BindingSpec>(storage.resources, "bindings");
      plain = servePlain({
        hostname: plainListen.host,
        port: plainListen.port,
        fetch: (request) => http.fetch(request),
        mainUrl: url,
        allowsPlain: async (tenant, binding) => {
          const spec = await bindings.get(tenant, binding).catch(() => null);
          return spec?.type === "webhook" && spec.plain_http === true;
        },
      });
    }
  } catch (e) {
    if (listening !== config.settings.http_listen) await http.stop(true);
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new Error(`cannot listen on ${listening}: ${code}`, { cause: e });
  }
  acquired.add(http, (h) => h.stop(true));
  if (plain) acquired.add(plain, (p) => p.stop(true));
  const plainUrl = plain ? `http://${hostOf(plain.hostname)}:${plain.port}` : null;
  if (!https && !isLoopback(config.http.host))
    log.warn("plain HTTP on a non-loopback address (http_tls = off): API tokens travel in clear", {
      http_listen: config.settings.http_listen,
    });

  const smtp = new SmtpIngress({ config, storage, spool, tls, log: log.child({ component: "smtp" }), metrics, clock });
  let smtpPort: number;
  try {
    smtpPort = await smtp.listen();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new Error(`cannot listen on ${config.settings.smtp_listen}: ${code}`, { cause: e });
  }
  const loopLag = new LoopLagMonitor(metrics.observeLoopLag).start();
  log.info("agentowl serving", {
    http: url,
    ...(plainUrl ? { http_plain: plainUrl } : {}),
    smtp: `${config.smtp.host}:${smtpPort}`,
    tls: tls.source,
    fingerprint,
    data_dir: config.dataDir,
    version: VERSION,
    schema: storage.migration.version,
  });

  let stopped: Promise<{ forced: boolean }> | null = null;
  const stop = (): Promise<{ forced: boolean }> => {
    stopped ??= (async () => {
      stopping = true;
      const deadline = Date.now() + config.shutdownTimeoutMs;
      const left = () => Math.max(0, deadline - Date.now());
      log.info("shutting down", { timeout_ms: config.shutdownTimeoutMs });
      loopLag.stop();
      clearInterval(recoverTimer);
      clearInterval(expiryTimer);
      retention.destroy();
      reminders.destroy();
      // 1. Stop accepting; let requests in flight finish until the deadline. Live log streams
      //    never finish on their own: end them first.
      opts.logTap?.closeAll();
      const drained = await Promise.race([
        Promise.all([http.stop(false), plain?.stop(false), smtp.close(deadline)]).then(() => true),
        Bun.sleep(left()).then(() => false),
      ]);
      if (!drained) await Promise.all([http.stop(true), plain?.stop(true)]);
      // 2. Stop leasing; let jobs in flight finish. A job cut off keeps its lease and is
      //    recovered by the next start: at least once, never lost.
      const cutOff = await runner.stop(left());
      await relay.stop();
      // Deliveries the router started itself (its fast path) finish too, or keep their jobs' leases.
      const fastCutOff = !(await dispatch.drain(left()));
      dispatch.close();
      // 3. Commit whatever is pending, checkpoint and close the database.
      await spool.close();
      await storage.close();
      lock.release();
      const forced = !drained || cutOff > 0 || fastCutOff;
      log[forced ? "warn" : "info"]("stopped", { forced, jobs_cut_off: cutOff });
      return { forced };
    })();
    return stopped;
  };

  return {
    url,
    plainUrl,
    smtp: { host: config.smtp.host, port: smtpPort },
    storage,
    metrics,
    http,
    redactor,
    vault,
    routing: dispatch.inline,
    stop,
  };
}
