import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { type Notifier, systemdNotifier, watchdogIntervalMs } from "../core/sd-notify.ts";
import type { ReadyCheck } from "../server/server.ts";
import type { Shutdown } from "./shutdown.ts";
import type { StopStack } from "./stop-stack.ts";

/** How often READY=1 is tried again while a /readyz check still fails at start-up. */
const READY_RETRY_MS = 200;

export interface SystemdHooks {
  /** One watchdog round: WATCHDOG=1 when the job runner's loop went round recently; true when sent. */
  watchdogTick(): boolean;
}

/**
 * The service manager is told READY=1 once every /readyz check passes (so `systemctl start`
 * returns when the appliance serves), WATCHDOG=1 while the job runner's own heartbeat is fresh
 * (a loop stuck for half the WatchdogSec stops the pings, and systemd restarts the service), and
 * STOPPING=1 when shutdown begins. Without NOTIFY_SOCKET it does nothing (docs/operations.md).
 */
export function notifySystemd(
  deps: {
    clock: Clock;
    log: Logger;
    ready: () => Promise<Record<string, ReadyCheck>>;
    runner: { heartbeat: number };
    notifier?: Notifier;
    env?: Record<string, string | undefined>;
  },
  stack: StopStack<Shutdown>,
): SystemdHooks {
  const { clock, log, runner } = deps;
  const env = deps.env ?? process.env;
  const notifier = deps.notifier ?? systemdNotifier(env);
  const intervalMs = watchdogIntervalMs(env);
  const hooks: SystemdHooks = {
    watchdogTick: () =>
      intervalMs !== null && clock.now() - runner.heartbeat < intervalMs / 2 && notifier.notify("WATCHDOG=1"),
  };
  if (!notifier.enabled) return hooks;

  let stopped = false;
  let retry: ReturnType<typeof setTimeout> | null = null;
  const tryReady = async (): Promise<void> => {
    retry = null;
    const checks = await deps.ready().catch(() => ({ ready: { ok: false } as ReadyCheck }));
    if (stopped) return;
    if (Object.values(checks).every((c) => c.ok)) {
      notifier.notify("READY=1");
      log.info("told systemd: ready");
    } else retry = setTimeout(tryReady, READY_RETRY_MS);
  };
  const watchdog = intervalMs === null ? null : setInterval(hooks.watchdogTick, Math.max(1, intervalMs / 4));
  void tryReady();
  stack.add("systemd notify", notifier, (n) => {
    stopped = true;
    if (retry) clearTimeout(retry);
    if (watchdog) clearInterval(watchdog);
    n.notify("STOPPING=1");
    n.close();
  });
  return hooks;
}
