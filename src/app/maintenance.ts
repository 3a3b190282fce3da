import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Config } from "../config/index.ts";
import type { Storage } from "../store/index.ts";
import type { Vault } from "../vault/vault.ts";
import { parseDuration } from "../config/index.ts";
import type { DiskWatch } from "../core/disk.ts";
import type { Backups } from "../backup/index.ts";
import {
  approvalExpiry,
  diskWatch,
  nightlyBackup,
  leaseRecovery,
  loopLagSampling,
  retentionSweep,
  rotationReminders,
  sessionPurge,
  type TenantRetention,
  spoolRetention,
} from "../workers/maintenance.ts";
import type { Service } from "../workers/service.ts";
import type { Users } from "../users/index.ts";
import type { MailParts } from "./mail.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";

/**
 * The maintenance tasks (src/workers/maintenance.ts), started last so that they stop first: none
 * runs while the listeners drain and the workers finish. `singleton` wraps the ones that must run
 * on one node at a time when several share the database (./workers.ts singletonsFor); lease
 * recovery runs on every node (any node may recover an expired lease), and so do the spool's
 * sweep (each node has its own spool) and the loop-lag sampling.
 */
export async function startMaintenance(
  deps: {
    log: Logger;
    clock: Clock;
    config: Config;
    storage: Storage;
    vault: Vault;
    mail: MailParts;
    metrics: Metrics;
    users: Users;
    disk: DiskWatch;
    backups: Backups;
    singleton: (service: Service) => Service;
  },
  stack: StopStack<Shutdown>,
): Promise<void> {
  const { config, storage, singleton } = deps;
  const ctx = { log: deps.log, clock: deps.clock };
  const { spool } = deps.mail;
  await stack.start(leaseRecovery(ctx, storage.queue, config.visibilityTimeoutMs));
  await stack.start(singleton(approvalExpiry(ctx, storage.approvals)));
  const shared = {
    queue: storage.queue,
    outbox: storage.outbox,
    retention: storage.retention,
    audit: storage.audit,
    tenants: () => tenantRetention(storage),
  };
  if (storage.spool) {
    // The spool is the database's too: one sweep, on one node, for every node's mail.
    await stack.start(singleton(retentionSweep(ctx, { ...shared, spool }, config)));
  } else if (storage.shared) {
    await stack.start(singleton(retentionSweep(ctx, { ...shared, spool: null }, config)));
    await stack.start(spoolRetention(ctx, spool, config));
  } else await stack.start(retentionSweep(ctx, { ...shared, spool }, config));
  await stack.start(diskWatch(ctx, deps.disk));
  await stack.start(singleton(rotationReminders(ctx, deps.vault, storage.outbox)));
  await stack.start(singleton(sessionPurge(ctx, deps.users)));
  await stack.start(loopLagSampling(deps.metrics.observeLoopLag));
  if (config.backup.keep > 0) await stack.start(nightlyBackup(ctx, deps.backups, config.backup.schedule));
}

/** Each tenant's `retention` block (docs/desired-state.md), its durations in ms. */
async function tenantRetention(storage: Storage): Promise<Map<string, TenantRetention>> {
  const out = new Map<string, TenantRetention>();
  for (const r of await storage.resources.list({ kind: "tenants", limit: 10_000 })) {
    const spec = (r.spec as { retention?: Record<string, string> } | null)?.retention;
    if (!spec) continue;
    const ms: TenantRetention = {};
    for (const k of ["events", "content", "attempts", "audit"] as const) {
      const d = spec[k] === undefined ? null : parseDuration(spec[k]);
      if (d) ms[k] = d;
    }
    out.set(r.name, ms);
  }
  return out;
}
