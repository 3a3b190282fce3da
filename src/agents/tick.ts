import type { Logger } from "../core/log.ts";
import { Periodic } from "../workers/periodic.ts";
import { every, type Timers } from "../workers/schedule.ts";
import type { Clock } from "../core/clock.ts";
import type { Pool } from "./pool.ts";

export interface TickReport {
  stuck: number;
  destroyed: number;
}

/**
 * One pass of the pool's upkeep (docs/agents.md): heartbeats written; a runtime whose process
 * exited is stuck at once, one silent for `agents_stuck_timeout` too; every stuck runtime, and any
 * destroy a crash or a failing plugin left half done, is destroyed; then the pool is refilled to
 * `min_idle` (awaited, so a runtime that died is replaced within this one tick).
 */
export async function tick(pool: Pool): Promise<TickReport> {
  const { storage, settings, log } = pool;
  await pool.flushHeartbeats();
  const now = pool.clock.now();
  const report: TickReport = { stuck: 0, destroyed: 0 };
  // This node's: on a shared database another node's runtimes are that node's to check.
  const rows = await storage.agents.liveRuntimes(pool.node);
  const destroys: Promise<unknown>[] = [];
  for (const row of rows) {
    if (pool.isDestroying(row.id)) continue;
    let state = row.state;
    let reason = row.error ?? "stuck";
    if (!row.destroying && state !== "stuck") {
      const live = pool.liveness(row.id);
      let why: string | null = null;
      if (state === "starting") {
        // A start in progress has its own hello timeout; a row nobody starts is left over.
        if (!live.running) why = "its start was abandoned";
      } else if (!live.running) why = "no process runs it";
      else if (live.exited) why = "its process exited";
      else {
        const last = Math.max(row.heartbeatAt ?? row.readyAt ?? row.createdAt, live.activity);
        if (now - last > settings.stuckTimeoutMs) why = `no heartbeat for ${Math.round((now - last) / 1000)} s`;
      }
      if (why && (await pool.markStuck(row, why))) {
        report.stuck++;
        state = "stuck";
        reason = `stuck: ${why}`;
      }
    }
    if (state === "stuck" || row.destroying) {
      const replaced = state === "stuck" && !row.destroying;
      destroys.push(
        pool.destroyRuntime(row.id, "system", "agent.destroy", reason).then(
          () => {
            report.destroyed++;
            if (replaced) pool.metrics?.replaced.inc();
          },
          (e) =>
            log.error("destroying an agent runtime failed; the next tick tries again", { runtime: row.id, err: e }),
        ),
      );
    }
  }
  // A process here whose row is no longer live: another node deleted it (a destroy asked there).
  const listed = new Set(rows.map((r) => r.id));
  for (const id of pool.liveIds()) {
    if (listed.has(id) || pool.isDestroying(id)) continue;
    const row = await storage.agents.getRuntime(id);
    if (row?.state === "deleted")
      destroys.push(
        pool.stopDeleted(row).then(
          () => void report.destroyed++,
          (e) =>
            log.error("stopping a runtime deleted elsewhere failed; the next tick tries again", {
              runtime: id,
              err: e,
            }),
        ),
      );
  }
  await Promise.all(destroys);
  await pool.refill();
  return report;
}

/** The tick every `agents_tick_interval`, as a service on the stop stack. */
export function poolTick(pool: Pool, ctx: { clock: Clock; log: Logger; everyMs: number; timers?: Timers }): Periodic {
  return new Periodic({
    name: "agents-tick",
    clock: ctx.clock,
    timers: ctx.timers,
    schedule: every(ctx.everyMs),
    run: () => tick(pool),
    onError: (e) => ctx.log.error("agent pool tick failed", { err: e }),
  });
}
