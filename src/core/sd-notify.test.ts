import { afterEach, expect, test } from "bun:test";
import { type NotifySocket, notifySocket } from "../../test/helpers/notify-socket.ts";
import { systemdNotifier, watchdogIntervalMs } from "./sd-notify.ts";

let socket: NotifySocket | null = null;
afterEach(() => {
  socket?.close();
  socket = null;
});

test("READY=1, WATCHDOG=1 and STOPPING=1 arrive as datagrams on NOTIFY_SOCKET", async () => {
  socket = await notifySocket();
  const notifier = systemdNotifier({ NOTIFY_SOCKET: socket.path });
  expect(notifier.enabled).toBe(true);
  expect(notifier.notify("READY=1")).toBe(true);
  expect(notifier.notify("WATCHDOG=1")).toBe(true);
  expect(notifier.notify("STOPPING=1")).toBe(true);
  await socket.waitFor("STOPPING=1");
  expect(socket.received).toEqual(["READY=1", "WATCHDOG=1", "STOPPING=1"]);
  notifier.close();
  expect(notifier.notify("READY=1")).toBe(false);
});

test("without NOTIFY_SOCKET every notification is a no-op", () => {
  const notifier = systemdNotifier({});
  expect(notifier.enabled).toBe(false);
  expect(notifier.notify("READY=1")).toBe(false);
});

test("a socket nobody listens on is reported as not delivered, not thrown", () => {
  const notifier = systemdNotifier({ NOTIFY_SOCKET: "/nonexistent/agentowl-notify.sock" });
  expect(notifier.notify("READY=1")).toBe(false);
  notifier.close();
});

test("the watchdog interval is WATCHDOG_USEC, only for the process WATCHDOG_PID names", () => {
  expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000" }, 42)).toBe(30_000);
  expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "42" }, 42)).toBe(30_000);
  expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "43" }, 42)).toBeNull();
  expect(watchdogIntervalMs({}, 42)).toBeNull();
});
