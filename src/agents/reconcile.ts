import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Pool } from "./pool.ts";
import type { RuntimeRecord, ToolRecord } from "./types.ts";

export interface ReconcileReport {
  /** Runtimes a previous run left warm, stuck, starting or half destroyed: destroyed now. */
  destroyed: number;
  /** Claimed runtimes started again in their directory, with their claim and tools. */
  relaunched: number;
  /** Claimed runtimes that could not be relaunched (destroyed instead). */
  failed: number;
  /** Tools a crash left in 'creating' or 'destroying': destroyed. */
  tools: number;
  /** Directories and sockets under <data>/agents without a live runtime: removed. */
  orphans: number;
}

/**
 * At start, before the tick (docs/agents.md): the rows are the truth, and no process of a previous
 * run is (bwrap's `--die-with-parent` ended them; in process isolation a recorded pid that is still
 * one of ours is killed). Every runtime not claimed, and every destroy under way, is destroyed;
 * a claimed runtime is relaunched with a new token and configured again; tools left half created
 * or half destroyed are destroyed; then nothing on disk is left without a live row.
 */
export async function reconcile(pool: Pool): Promise<ReconcileReport> {
  const { storage, log, provisioner } = pool;
  const report: ReconcileReport = { destroyed: 0, relaunched: 0, failed: 0, tools: 0, orphans: 0 };
  // This node's: on a shared database the other nodes' runtimes are alive, and theirs to keep.
  const rows = await storage.agents.liveRuntimes(pool.node);

  // Half-done tools first: a relaunched runtime keeps only its settled (active) ones.
  const byId = new Map(rows.map((r) => [r.id, r]));
  const unsettled = new Map<string, ToolRecord[]>();
  for (const t of await storage.agents.unsettledTools())
    unsettled.set(t.runtimeId, [...(unsettled.get(t.runtimeId) ?? []), t]);
  for (const [runtimeId, tools] of unsettled) {
    const runtime =
      byId.get(runtimeId) ?? (await storage.agents.getRuntime(runtimeId)) ?? orphanRuntime(runtimeId, tools);
    // Another node's runtime may be making or destroying its tools right now.
    if (!pool.ours(runtime)) continue;
    try {
      await provisioner.destroyTools(runtime, tools);
      report.tools += tools.length;
    } catch (e) {
      log.error("destroying a tool a crash left unsettled failed", { runtime: runtimeId, err: e });
    }
  }

  const relaunched = new Set<string>();
  for (const row of rows) {
    if (row.state === "claimed" && !row.destroying) {
      try {
        await pool.relaunch(row);
        relaunched.add(row.id);
        report.relaunched++;
        continue;
      } catch (e) {
        report.failed++;
        log.error("relaunching a claimed agent runtime failed; it is destroyed", { runtime: row.id, err: e });
        await pool.markStuck(row, `relaunch failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    try {
      await pool.destroyRuntime(
        row.id,
        "system",
        "agent.destroy",
        row.destroying ? "resumed" : "left by a previous run",
      );
      report.destroyed++;
    } catch (e) {
      log.error("destroying a runtime left by a previous run failed; the tick tries again", {
        runtime: row.id,
        err: e,
      });
    }
  }

  // What no row explains: a directory or socket made before its row committed, or after it was deleted.
  const keep = new Set<string>();
  for (const r of await storage.agents.liveRuntimes(pool.node)) keep.add(r.id);
  for (const name of readdirSync(pool.rtDir)) {
    if (keep.has(name)) continue;
    rmSync(join(pool.rtDir, name), { recursive: true, force: true });
    report.orphans++;
  }
  for (const name of readdirSync(pool.runDir)) {
    if (keep.has(name.replace(/\.sock$/, ""))) continue;
    rmSync(join(pool.runDir, name), { recursive: true, force: true });
    report.orphans++;
  }
  if (report.destroyed || report.relaunched || report.failed || report.tools || report.orphans)
    log.info("agent pool reconciled", { ...report });
  return report;
}

/** A runtime row that is gone, as tool destruction needs it. */
function orphanRuntime(id: string, tools: readonly ToolRecord[]): RuntimeRecord {
  return {
    id,
    state: "deleted",
    isolation: "process",
    tenant: tools[0]?.tenant ?? null,
    agent: null,
    template: null,
    templateVersion: null,
    userConfig: null,
    tokenHash: "revoked",
    dir: "",
    socket: "",
    pid: null,
    cold: false,
    createdAt: 0,
    readyAt: null,
    claimedAt: null,
    heartbeatAt: null,
    syncedAt: null,
    stuckAt: null,
    deletedAt: null,
    destroying: false,
    error: null,
    node: null,
  };
}
