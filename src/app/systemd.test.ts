import { afterEach, expect, test } from "bun:test";
import { ManualClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import type { ReadyCheck } from "../server/server.ts";
import { type NotifySocket, notifySocket } from "../../test/helpers/notify-socket.ts";
import { Shutdown } from "./shutdown.ts";
import { StopStack } from "./stop-stack.ts";
import { notifySystemd } from "./systemd.ts";

let socket: NotifySocket | null = null;
afterEach(() => {
  socket?.close();
  socket = null;
});

test("READY=1 is sent once every /readyz check passes, not before", async () => {
  socket = await notifySocket();
  const clock = new ManualClock();
  const stack = new StopStack<Shutdown>();
  let database: ReadyCheck = { ok: false, detail: "not yet" };
  let asked = 0;
  notifySystemd(
    {
      clock,
      log: silentLogger,
      ready: async () => {
        asked++;
        return { accepting: { ok: true }, database };
      },
      runner: { heartbeat: clock.now() },
      env: { NOTIFY_SOCKET: socket.path },
    },
    stack,
  );
  const deadline = Date.now() + 5000;
  while (asked < 2 && Date.now() < deadline) await Bun.sleep(10);
  expect(socket.received).toEqual([]);
  database = { ok: true };
  await socket.waitFor("READY=1");
  await stack.stop(new Shutdown(clock, 0));
  await socket.waitFor("STOPPING=1");
  expect(socket.received).toEqual(["READY=1", "STOPPING=1"]);
});

test("WATCHDOG=1 is sent while the job runner's heartbeat is fresh, and stops when its loop is stuck", async () => {
  socket = await notifySocket();
  const clock = new ManualClock();
  const stack = new StopStack<Shutdown>();
  const runner = { heartbeat: clock.now() };
  const hooks = notifySystemd(
    {
      clock,
      log: silentLogger,
      ready: async () => ({ accepting: { ok: true } }),
      runner,
      // An hour: the interval timer does not fire during the test; the ticks below are by hand.
      env: { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: String(3600e6) },
    },
    stack,
  );
  await socket.waitFor("READY=1");
  clock.advance(60_000);
  runner.heartbeat = clock.now();
  expect(hooks.watchdogTick()).toBe(true);
  await socket.waitFor("WATCHDOG=1");
  // The loop stops going round: after half the watchdog interval no ping is sent.
  clock.advance(1_800_000);
  expect(hooks.watchdogTick()).toBe(false);
  await stack.stop(new Shutdown(clock, 0));
  await socket.waitFor("STOPPING=1");
  expect(socket.received).toEqual(["READY=1", "WATCHDOG=1", "STOPPING=1"]);
});

test("without NOTIFY_SOCKET nothing is registered and nothing is sent", async () => {
  const stack = new StopStack<Shutdown>();
  const clock = new ManualClock();
  const hooks = notifySystemd(
    { clock, log: silentLogger, ready: async () => ({}), runner: { heartbeat: clock.now() }, env: {} },
    stack,
  );
  expect(stack.names).toEqual([]);
  expect(hooks.watchdogTick()).toBe(false);
});
