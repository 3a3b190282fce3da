import { hostname } from "node:os";
import type { Clock, Random } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Config } from "../config/index.ts";
import { DELIVERY_JOB, dispatcher, recoverFastAttempts } from "../dispatch/dispatcher.ts";
import { MAIL_PROCESS_JOB } from "../ingress/smtp/index.ts";
import { mailProcessor } from "../mail/process.ts";
import type { Storage } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import { type JobHandler, JobRunner } from "../workers/job-runner.ts";
import { OutboxRelay, type Subscriber } from "../workers/outbox-relay.ts";
import type { Service } from "../workers/service.ts";
import { Singleton } from "../workers/singleton.ts";
import type { MailParts } from "./mail.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";

export type Dispatch = ReturnType<typeof dispatcher>;

/** The dispatcher. At shutdown, deliveries it started itself (its fast path) finish or keep their jobs' leases. */
export function openDispatch(
  deps: { config: Config; storage: Storage; vault: Vault; metrics: Metrics; clock: Clock; random?: Random },
  stack: StopStack<Shutdown>,
): Dispatch {
  const dispatch = dispatcher({
    storage: deps.storage,
    vault: deps.vault,
    owner: `pid:${process.pid}`,
    visibilityMs: deps.config.visibilityTimeoutMs,
    workers: deps.config.workerConcurrency,
    clock: deps.clock,
    random: deps.random,
  });
  deps.metrics.watchCircuits(() => dispatch.breakers.troubled());
  return stack.add("dispatch", dispatch, async (d, shutdown) => {
    if (!(await d.drain(shutdown.left()))) shutdown.forced = true;
    d.close();
  });
}

/**
 * Jobs leased by a previous process that died are ours to finish, now: on SQLite the data dir's
 * lock says no other process of this appliance is alive, so no lease is still being worked on. On
 * a shared database (several nodes) a lease may be another node's live work: only the expired
 * ones are recovered, as the periodic lease recovery does.
 */
export async function recoverLeases(storage: Storage, log: Logger): Promise<void> {
  const recovered = await storage.queue.recoverExpired(storage.shared ? {} : { all: true });
  if (recovered) log.info("recovered jobs whose lease expired", { jobs: recovered });
  // The fast path's attempts on SQLite hold no job: one cut off left its delivery `delivering`.
  const cutOff = await recoverFastAttempts(storage);
  if (cutOff) log.info("recovered fast-path deliveries cut off by the stop", { deliveries: cutOff });
}

export interface Workers {
  runner: JobRunner;
  /** The relay, or its singleton wrapper on a shared database (`heartbeat` either way). */
  relay: Service & { heartbeat: number };
}

/**
 * How this node runs the work that must run on one node at a time: as it is on SQLite (one
 * process holds the data dir), under a singleton lease (src/workers/singleton.ts) when several
 * nodes share the database.
 */
export function singletonsFor(deps: {
  storage: Storage;
  log: Logger;
  clock: Clock;
}): <S extends Service>(service: S) => Service {
  if (!deps.storage.shared) return (service) => service;
  const holder = `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
  const log = deps.log.child({ component: "singleton" });
  return (service) => new Singleton(service, { leases: deps.storage.leases, holder, clock: deps.clock, log });
}

/**
 * The outbox relay and the job runner, with the job kinds this process works on. Stopped in
 * reverse: the runner stops leasing and lets its jobs finish until the deadline (a job cut off
 * keeps its lease and runs again after the next start: at least once, never lost), then the relay.
 */
export async function startWorkers(
  deps: {
    config: Config;
    log: Logger;
    clock: Clock;
    storage: Storage;
    metrics: Metrics;
    mail: MailParts;
    dispatch: Dispatch;
    handlers?: ReadonlyMap<string, JobHandler>;
    subscribers?: readonly Subscriber[];
    singleton?: (service: Service) => Service;
  },
  stack: StopStack<Shutdown>,
): Promise<Workers> {
  const { config, log, clock, storage, metrics, mail, dispatch } = deps;
  const handlers = new Map(deps.handlers ?? []);
  const { spool, blobs, resolver } = mail;
  handlers.set(
    MAIL_PROCESS_JOB,
    mailProcessor({ storage, spool, blobs, resolver, metrics, routing: dispatch.inline, clock }),
  );
  handlers.set(DELIVERY_JOB, dispatch.run);
  // Outbox entries are counted as they commit. Earlier builds counted them with a "metrics"
  // subscriber that read the whole log: its cursor goes, or it would hold back the retention purge.
  storage.outbox.onCommitted((topic) => metrics.outboxEvents.inc({ topic }));
  await storage.outbox.forget("metrics");
  const relay = new OutboxRelay(
    storage.outbox,
    [dispatch.router, dispatch.approvals, dispatch.endpointChanges, ...(deps.subscribers ?? [])],
    log.child({ component: "outbox" }),
    { clock },
  );
  // On a shared database one node relays (the approvals follower is one of its subscribers).
  const relaying = deps.singleton?.(relay) ?? relay;
  await stack.start(relaying);
  const runner = new JobRunner({
    queue: storage.queue,
    handlers,
    log: log.child({ component: "jobs" }),
    concurrency: config.workerConcurrency,
    visibilityMs: config.visibilityTimeoutMs,
    owner: `pid:${process.pid}`,
    clock,
    onOutcome: (kind, outcome, seconds) => {
      metrics.jobs.inc({ kind, outcome });
      metrics.jobSeconds.observe({ kind }, seconds);
    },
  });
  runner.start();
  stack.add("jobs", runner, async (r, shutdown) => {
    const cutOff = await r.stop(shutdown.left());
    shutdown.jobsCutOff += cutOff;
    if (cutOff > 0) shutdown.forced = true;
  });
  return { runner, relay: relaying as Service & { heartbeat: number } };
}
