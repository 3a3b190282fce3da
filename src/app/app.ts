import type { AnyElysia } from "elysia";
import type { Pool } from "../agents/pool.ts";
import { Backups } from "../backup/index.ts";
import { type Clock, type Random, systemClock } from "../core/clock.ts";
import { type Logger, type LogTap, Redactor } from "../core/log.ts";
import { DiskWatch } from "../core/disk.ts";
import { Metrics } from "../core/metrics.ts";
import type { Config } from "../config/index.ts";
import type { LiveOptions } from "../console/index.ts";
import { Users } from "../users/index.ts";
import type { EventRouting } from "../events/handoff.ts";
import { fingerprintOf } from "../server/tls.ts";
import type { Storage } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import { VERSION } from "../version.ts";
import type { JobHandler } from "../workers/job-runner.ts";
import { walCheckpointer } from "../workers/maintenance.ts";
import type { Subscriber } from "../workers/outbox-relay.ts";
import { type AgentParts, agentServices, openAgents, probeIsolation } from "./agents.ts";
import { type Listening, startListeners } from "./listeners.ts";
import { type MailParts, prepareMail } from "./mail.ts";
import { startMaintenance } from "./maintenance.ts";
import { readiness } from "./ready.ts";
import { Shutdown } from "./shutdown.ts";
import { stepTimer } from "./steps.ts";
import { StopStack } from "./stop-stack.ts";
import { openStorage } from "./storage.ts";
import { notifySystemd } from "./systemd.ts";
import { openVault } from "./vault.ts";
import { openDispatch, recoverLeases, singletonsFor, startWorkers } from "./workers.ts";

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
  /** The console's live streams: limits and ping interval (tests shorten them). */
  live?: Partial<LiveOptions>;
  /** The agent pool's launcher, isolation and tool provisioning; without them no pool is opened. */
  agents?: Partial<AgentParts>;
}

export interface App {
  /** Base URL of the HTTP listener, e.g. https://10.0.0.2:8080 (http:// on loopback unless http_tls says on). */
  readonly url: string;
  /** Base URL of the plain-HTTP listener (http_plain_listen), when there is one. */
  readonly plainUrl: string | null;
  /** Where the SMTP listener listens (the port is the bound one when the setting said 0). */
  readonly smtp: { host: string; port: number };
  readonly storage: Storage;
  readonly metrics: Metrics;
  readonly http: AnyElysia;
  readonly redactor: Redactor;
  readonly vault: Vault;
  /** Console users and their sessions (the console and /v1/users share them). */
  readonly users: Users;
  /** Routing at an event's commit (src/events/handoff.ts), as the ingresses use it. */
  readonly routing: EventRouting;
  /** The agent pool (docs/agents.md), when it was opened. */
  readonly agents: Pool;
  /** Backups into backup_dir (POST /v1/backups, the nightly job). */
  readonly backups: Backups;
  /** Graceful stop: refuse new work, drain in-flight requests and jobs, close the database. */
  stop(): Promise<{ forced: boolean }>;
}

/**
 * The composition root of `agentowl serve`. Each step registers what it acquires on one stop
 * stack: shutdown gives it all back in the reverse order, and a step that fails gives back what
 * the steps before it acquired (docs/architecture.md#start-up-and-shutdown).
 */
export async function startApp(opts: AppOptions): Promise<App> {
  const clock = opts.clock ?? systemClock;
  const stack = new StopStack<Shutdown>();
  try {
    return await start({ ...opts, clock }, stack);
  } catch (e) {
    // Nothing is in flight yet: everything is given back at once.
    await stack.stop(new Shutdown(clock, 0));
    throw e;
  }
}

async function start(opts: AppOptions & { clock: Clock }, stack: StopStack<Shutdown>): Promise<App> {
  const { config, log, clock } = opts;
  const redactor = opts.redactor ?? new Redactor();
  redactor.learn(config.bootstrapToken);
  const step = stepTimer(log);
  const isolation = probeIsolation(opts.agents);
  const metrics = new Metrics();
  step("metrics");
  const storage = openStorage({ config, log, metrics, clock, random: opts.random }, stack);
  step("storage");
  await stack.start(walCheckpointer(storage, log));
  step("wal checkpointer");
  const vault = await openVault({ config, log, storage, redactor, clock });
  step("vault");
  const mail = await prepareMail({ config, log, storage, clock }, stack);
  step("mail");
  const dispatch = openDispatch({ config, storage, vault, metrics, clock, random: opts.random }, stack);
  step("dispatch");
  await recoverLeases(storage, log);
  step("recover leases");
  const services = agentServices({ config, log, clock, storage, vault, metrics, dispatch });
  step("agent services");
  const { handlers } = opts;
  const subscribers = [...(opts.subscribers ?? []), services.calls.approvals];
  const singleton = singletonsFor({ storage, log, clock });
  const workers = await startWorkers(
    { config, log, clock, storage, metrics, mail, dispatch, handlers, subscribers, singleton },
    stack,
  );
  step("workers");
  const agents = await openAgents(
    { config, log, clock, storage, metrics, services, parts: opts.agents, isolation },
    stack,
  );
  step("agents");
  const state = { stopping: false };
  const disk = new DiskWatch(config.dataDir, config.disk, log);
  metrics.watchDisk(() => disk.sample());
  const ready = readiness({ storage, clock, workers, stopping: () => state.stopping, agents, disk });
  const logTap = opts.logTap ?? null;
  const backups = new Backups(
    {
      dataDir: config.dataDir,
      masterKeyFile: config.masterKeyFile,
      dir: config.backup.dir,
      keep: config.backup.keep,
      maxBytesPerSecond: config.backup.maxBytesPerSecond,
    },
    clock,
    log.child({ component: "backup" }),
  );
  const users = new Users({
    storage,
    clock,
    idleMs: config.consoleSession.idleMs,
    maxMs: config.consoleSession.maxMs,
    bootstrapToken: config.bootstrapToken,
  });
  const listening = await startListeners(
    {
      ...{ config, log, clock, metrics, storage, vault, dispatch, mail, logTap, ready, users, live: opts.live },
      agents,
      tools: () => services.registry.list(),
      agentAddresses: services.directory,
      reserveJob: (kind) => workers.runner.reserve(kind),
      backups,
    },
    stack,
  );
  step("listeners");
  await startMaintenance({ log, clock, config, storage, vault, mail, metrics, users, disk, backups, singleton }, stack);
  step("maintenance");
  logServing(log, config, listening, mail, storage);
  // Under systemd (Type=notify): READY=1 once /readyz passes, WATCHDOG=1 from the job runner's heartbeat.
  notifySystemd({ clock, log, ready, runner: workers.runner }, stack);

  return {
    url: listening.url,
    plainUrl: listening.plainUrl,
    smtp: listening.smtp,
    storage,
    metrics,
    http: listening.http,
    redactor,
    vault,
    users,
    routing: dispatch.inline,
    agents,
    backups,
    stop: stopOnce({ config, log, clock, stack, state }),
  };
}

function logServing(log: Logger, config: Config, listening: Listening, mail: MailParts, storage: Storage): void {
  log.info("agentowl serving", {
    http: listening.url,
    ...(listening.plainUrl ? { http_plain: listening.plainUrl } : {}),
    smtp: `${config.smtp.host}:${listening.smtp.port}`,
    tls: mail.tls.source,
    fingerprint: fingerprintOf(mail.tls.cert),
    data_dir: config.dataDir,
    version: VERSION,
    schema: storage.migration.version,
  });
}

/**
 * The app's stop: /readyz turns 503 at once, then the stop stack gives back what start-up
 * acquired within `shutdown_timeout`. Every call gets the first one's result.
 */
function stopOnce(deps: {
  config: Config;
  log: Logger;
  clock: Clock;
  stack: StopStack<Shutdown>;
  state: { stopping: boolean };
}): () => Promise<{ forced: boolean }> {
  const { config, log } = deps;
  let stopped: Promise<{ forced: boolean }> | null = null;
  return () => {
    stopped ??= (async () => {
      deps.state.stopping = true;
      log.info("shutting down", { timeout_ms: config.shutdownTimeoutMs });
      const shutdown = new Shutdown(deps.clock, config.shutdownTimeoutMs);
      const failures = await deps.stack.stop(shutdown);
      for (const f of failures) log.error("shutdown step failed", { step: f.name, err: f.error });
      if (failures.length) throw failures[0]!.error;
      const { forced, jobsCutOff } = shutdown;
      log[forced ? "warn" : "info"]("stopped", { forced, jobs_cut_off: jobsCutOff });
      return { forced };
    })();
    return stopped;
  };
}
