import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { LoopLagMonitor } from "../core/loop-lag.ts";
import type { AuditLog, JobQueue, Outbox, Retention, RetentionCutoffs, Storage } from "../store/index.ts";
import { Periodic } from "./periodic.ts";
import { cronSchedule, dailyAt, every, hourlyAt, type Timers } from "./schedule.ts";
import type { Service } from "./service.ts";

/** What every maintenance task is given: where to log, the clock, and the timers that wake it. */
/** What a spool's purge removed. */
type SpoolPurge = { segments: number; bytes: number };

export interface MaintenanceContext {
  log: Logger;
  clock: Clock;
  timers?: Timers;
}

/** Expired leases are looked for often (a dead worker's jobs should not wait long): a quarter of the visibility timeout, 1 to 30 s. */
export const leaseRecoveryEvery = (visibilityTimeoutMs: number): number =>
  Math.max(1000, Math.min(30_000, Math.floor(visibilityTimeoutMs / 4)));

/** Puts jobs whose lease expired (their worker died or hung) back in the queue. */
export function leaseRecovery(
  ctx: MaintenanceContext,
  queue: Pick<JobQueue, "recoverExpired">,
  visibilityTimeoutMs: number,
): Periodic {
  const { log } = ctx;
  return new Periodic({
    ...ctx,
    name: "lease-recovery",
    schedule: every(leaseRecoveryEvery(visibilityTimeoutMs)),
    run: async () => {
      const n = await queue.recoverExpired();
      if (n) log.info("recovered jobs whose lease expired", { jobs: n });
    },
    onError: (e) => log.error("lease recovery failed", { err: e }),
  });
}

/** Hourly, at 47 past: console sessions that ended (signed out, expired, idle) leave the database. */
export function sessionPurge(ctx: MaintenanceContext, users: { purgeSessions(): Promise<number> }): Periodic {
  const { log } = ctx;
  return new Periodic({
    ...ctx,
    name: "session-purge",
    schedule: hourlyAt(47),
    run: async () => {
      const n = await users.purgeSessions();
      if (n) log.info("ended console sessions removed", { sessions: n });
    },
    onError: (e) => log.error("session purge failed", { err: e }),
  });
}

/** How often approvals past their deadline are looked for. */
export const APPROVAL_EXPIRY_EVERY_MS = 5000;

/** Approvals nobody decided in time take their declared outcome. */
export function approvalExpiry(ctx: MaintenanceContext, approvals: { expireDue(): Promise<number> }): Periodic {
  const { log } = ctx;
  return new Periodic({
    ...ctx,
    name: "approval-expiry",
    schedule: every(APPROVAL_EXPIRY_EVERY_MS),
    run: async () => {
      const n = await approvals.expireDue();
      if (n) log.info("approvals expired", { approvals: n });
    },
    onError: (e) => log.error("approval expiry failed", { err: e }),
  });
}

/** A tenant's `retention` (docs/desired-state.md#tenants): durations such as 30d, each overriding its setting. */
export interface TenantRetention {
  events?: number;
  content?: number;
  attempts?: number;
  audit?: number;
}

/** Cutoffs at `now`: each tenant's own duration where it set one, else the setting's. */
export function cutoffs(now: number, defaultMs: number, perTenant: ReadonlyMap<string, number>): RetentionCutoffs {
  const newest = now - Math.min(defaultMs, ...perTenant.values());
  return {
    cutoffFor: (tenant) => now - ((tenant !== null && perTenant.get(tenant)) || defaultMs),
    newest: () => newest,
  };
}

/**
 * Hourly, at 17 past: finished jobs, outbox entries every subscriber has passed and spool segments
 * older than their retention go (docs/configuration.md: queue_retention, spool_retention); then,
 * per tenant, old events, their parsed content and blobs, delivery attempts and the start of the
 * audit log (docs/operations.md#retention); then the freed pages go back to the disk.
 */
export function retentionSweep(
  ctx: MaintenanceContext,
  parts: {
    queue: Pick<JobQueue, "sweep">;
    outbox: Pick<Outbox, "purge">;
    /** This node's spool; none when the spool is swept on its own (spoolRetention: several nodes, one spool each). */
    spool: { purge(cutoff: number): SpoolPurge | Promise<SpoolPurge> } | null;
    retention?: Retention;
    audit?: Pick<AuditLog, "prune">;
    /** Each tenant's `retention`, read at every sweep (a change applies at the next one). */
    tenants?: () => Promise<ReadonlyMap<string, TenantRetention>>;
  },
  limits: {
    retentionMs: number;
    spoolRetentionMs: number;
    retention?: { eventsMs: number; contentMs: number; attemptsMs: number; auditMs: number };
  },
): Periodic {
  const { log, clock } = ctx;
  return new Periodic({
    ...ctx,
    name: "retention",
    schedule: hourlyAt(17),
    run: async () => {
      const jobs = await parts.queue.sweep(limits.retentionMs);
      const outbox = await parts.outbox.purge(limits.retentionMs);
      const spooled = await parts.spool?.purge(clock.now() - limits.spoolRetentionMs);
      const tenantRows = (await parts.tenants?.()) ?? new Map<string, TenantRetention>();
      const now = clock.now();
      const byKind = (kind: keyof TenantRetention) =>
        new Map([...tenantRows].filter(([, r]) => r[kind] !== undefined).map(([t, r]) => [t, r[kind]!] as const));
      const d = limits.retention;
      const swept =
        d && parts.retention
          ? await parts.retention.sweep({
              events: cutoffs(now, d.eventsMs, byKind("events")),
              content: cutoffs(now, d.contentMs, byKind("content")),
              attempts: cutoffs(now, d.attemptsMs, byKind("attempts")),
            })
          : null;
      const audit =
        d && parts.audit?.prune ? await parts.audit.prune(cutoffs(now, d.auditMs, byKind("audit")).cutoffFor) : null;
      const vacuumed = parts.retention ? await parts.retention.vacuum() : null;
      log.info("retention sweep", {
        ...jobs,
        outbox_purged: outbox,
        spool_segments_purged: spooled?.segments,
        spool_bytes_purged: spooled?.bytes,
        ...(swept
          ? {
              events_purged: swept.events,
              contents_purged: swept.contents,
              attempts_purged: swept.attempts,
              blobs_purged: swept.blobs,
              agent_runtimes_purged: swept.runtimes,
            }
          : {}),
        ...(audit ? { audit_entries_pruned: audit.entries, audit_pruned_through: audit.through } : {}),
        ...(vacuumed ? { database_bytes_freed: vacuumed.bytes } : {}),
      });
    },
    onError: (e) => log.error("retention sweep failed", { err: e }),
  });
}

/** Every 30 s: the data dir's free space against disk_warn_free and disk_fail_free, logged when it crosses one. */
export function diskWatch(ctx: MaintenanceContext, disk: { sample(): unknown }): Periodic {
  const { log } = ctx;
  return new Periodic({
    ...ctx,
    name: "disk-watch",
    schedule: every(30_000),
    runAtStart: true,
    run: async () => void disk.sample(),
    onError: (e) => log.error("reading the data dir's free space failed", { err: e }),
  });
}

/**
 * The nightly backup (docs/operations.md#backups): at `backup_schedule`, a backup into
 * `backup_dir`, then the oldest beyond `backup_keep` removed. A failed one is logged as an error
 * and the next comes at its time.
 */
export function nightlyBackup(
  ctx: MaintenanceContext,
  backups: { nightly(): Promise<{ result: { path: string }; pruned: string[] }> },
  schedule: string,
): Periodic {
  const { log } = ctx;
  return new Periodic({
    ...ctx,
    name: "backup",
    schedule: cronSchedule(schedule),
    run: () => backups.nightly(),
    onError: (e) => log.error("nightly backup failed", { err: e }),
  });
}

/**
 * The spool's part of the retention sweep, on its own: with several nodes on one database the
 * sweep of the shared tables runs on one node, and every node sweeps its own spool.
 */
export function spoolRetention(
  ctx: MaintenanceContext,
  spool: { purge(cutoff: number): SpoolPurge | Promise<SpoolPurge> },
  limits: { spoolRetentionMs: number },
): Periodic {
  const { log, clock } = ctx;
  return new Periodic({
    ...ctx,
    name: "spool-retention",
    schedule: hourlyAt(17),
    run: async () => {
      const spooled = await spool.purge(clock.now() - limits.spoolRetentionMs);
      log.info("spool retention sweep", { spool_segments_purged: spooled.segments, spool_bytes_purged: spooled.bytes });
    },
    onError: (e) => log.error("spool retention sweep failed", { err: e }),
  });
}

/** How far ahead a secret's rotation is announced. */
const ROTATION_HORIZON_MS = 7 * 86_400_000;

/** A secret's rotation deadline, as the vault lists it. */
interface RotationDue {
  tenant: string;
  name: string;
  version: number;
  rotationDueAt: number | null;
}

/**
 * Rotation reminders (docs/api.md#vault): at start and every morning at 9, the secrets whose
 * declared rotation period runs out within a week are named in the log and on the outbox.
 */
export function rotationReminders(
  ctx: MaintenanceContext,
  vault: { dueForRotation(horizonMs: number): Promise<RotationDue[]> },
  outbox: Pick<Outbox, "emit">,
): Periodic {
  const { log, clock } = ctx;
  return new Periodic({
    ...ctx,
    name: "secret-rotation-reminders",
    schedule: dailyAt(9, 0),
    runAtStart: true,
    run: async () => {
      for (const s of await vault.dueForRotation(ROTATION_HORIZON_MS)) {
        const overdue = s.rotationDueAt! <= clock.now();
        log.warn(overdue ? "secret rotation overdue" : "secret rotation due soon", {
          tenant: s.tenant,
          scope: `${s.tenant}/${s.name}`,
          version: s.version,
          due_at: new Date(s.rotationDueAt!).toISOString(),
        });
        await outbox.emit({
          topic: "secret.rotation_due",
          tenant: s.tenant,
          payload: { name: s.name, version: s.version, due_at: s.rotationDueAt, overdue },
        });
      }
    },
    onError: (e) => log.error("rotation reminders failed", { err: e }),
  });
}

/** Samples how late the event loop runs its timers (guarantee 9, docs/guarantees.md) into the metrics. */
export function loopLagSampling(onLag: (ms: number) => void): Service {
  const monitor = new LoopLagMonitor(onLag);
  return {
    name: "loop-lag",
    start: () => void monitor.start(),
    stop: async () => monitor.stop(),
  };
}

/**
 * The WAL checkpointer (docs/architecture.md#durability-settings): a worker thread copies the WAL
 * into the database off the event loop. Stopped before the storage closes, which checkpoints the
 * rest itself.
 */
export function walCheckpointer(storage: Pick<Storage, "background">, log: Logger): Service {
  let running: { stop(): Promise<void> } | null = null;
  return {
    name: "wal-checkpointer",
    start: () => {
      running = storage.background((message) => log.error("WAL checkpoint", { detail: message }));
    },
    stop: async () => {
      await running?.stop();
      running = null;
    },
  };
}
