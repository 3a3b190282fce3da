import type { Clock } from "../core/clock.ts";
import type { ReadyCheck } from "../server/server.ts";
import type { Storage } from "../store/index.ts";

const READY_WRITE_TIMEOUT_MS = 2000;
const STALE_HEARTBEAT_MS = 10_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, Bun.sleep(ms).then(() => Promise.reject(new Error(`${what} took longer than ${ms} ms`)))]);
}

/**
 * /readyz: accepting (not shutting down), the database takes a durable write within 2 s, the
 * job runner's and the outbox relay's loops went round within the last 10 s, and the data dir's
 * disk has more free space than disk_fail_free.
 */
export function readiness(deps: {
  storage: Pick<Storage, "probeWrite">;
  clock: Clock;
  workers: { runner: { heartbeat: number }; relay: { heartbeat: number } };
  stopping: () => boolean;
  /** How agent runtimes are isolated: said on /readyz (the pool runs either way). */
  agents?: { isolation: { isolation: string; reason: string | null } };
  /** Free space of the data dir's disk: fails below disk_fail_free. */
  disk?: { check(): ReadyCheck };
}): () => Promise<Record<string, ReadyCheck>> {
  const { storage, clock, workers } = deps;
  return async () => {
    const now = clock.now();
    const database: ReadyCheck = await withTimeout(storage.probeWrite(), READY_WRITE_TIMEOUT_MS, "a durable write")
      .then(() => ({ ok: true }))
      .catch((e: Error) => ({ ok: false, detail: `database not writable: ${e.message}` }));
    const alive = (beat: number): ReadyCheck =>
      now - beat < STALE_HEARTBEAT_MS ? { ok: true } : { ok: false, detail: `no heartbeat for ${now - beat} ms` };
    return {
      accepting: deps.stopping() ? { ok: false, detail: "shutting down" } : { ok: true },
      database,
      jobs: alive(workers.runner.heartbeat),
      outbox: alive(workers.relay.heartbeat),
      ...(deps.disk ? { disk: deps.disk.check() } : {}),
      ...(deps.agents ? { agents: agentsCheck(deps.agents.isolation) } : {}),
    };
  };
}

/** Sandboxed or not, the pool serves: `isolation: process` is said, not failed. */
function agentsCheck(i: { isolation: string; reason: string | null }): ReadyCheck {
  return { ok: true, detail: `isolation: ${i.isolation}${i.reason ? ` (${i.reason})` : ""}` };
}
