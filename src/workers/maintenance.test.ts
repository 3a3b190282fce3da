import { describe, expect, test } from "bun:test";
import { until } from "../../test/helpers/storage.ts";
import { ManualClock } from "../core/clock.ts";
import { createLogger, Redactor } from "../core/log.ts";
import {
  approvalExpiry,
  leaseRecovery,
  leaseRecoveryEvery,
  retentionSweep,
  rotationReminders,
  sessionPurge,
} from "./maintenance.ts";
import { hourlyAt, ManualTimers } from "./schedule.ts";

function harness() {
  const clock = new ManualClock();
  const timers = new ManualTimers(clock);
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: "debug", redactor: new Redactor(), sink: (l) => lines.push(JSON.parse(l)) });
  return { clock, timers, lines, ctx: { log, clock, timers } };
}

describe("maintenance tasks", () => {
  test("lease recovery runs every quarter of the visibility timeout (1 to 30 s), not before", async () => {
    const { timers, ctx } = harness();
    let runs = 0;
    const task = leaseRecovery(ctx, { recoverExpired: async () => (runs++, 0) }, 60_000);
    expect(leaseRecoveryEvery(60_000)).toBe(15_000);
    expect(leaseRecoveryEvery(1000)).toBe(1000);
    expect(leaseRecoveryEvery(3_600_000)).toBe(30_000);
    task.start();
    timers.advance(14_999);
    expect(runs).toBe(0);
    timers.advance(1);
    expect(runs).toBe(1);
    await until("the next run to be scheduled", () => timers.size === 1);
    timers.advance(15_000);
    expect(runs).toBe(2);
    await task.stop();
  });

  test("stop() cancels the next run and waits for the one running", async () => {
    const { timers, ctx } = harness();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const order: string[] = [];
    const task = approvalExpiry(ctx, {
      expireDue: async () => {
        order.push("run started");
        await gate;
        order.push("run finished");
        return 0;
      },
    });
    task.start();
    timers.advance(5000);
    expect(order).toEqual(["run started"]);
    const stopping = task.stop().then(() => order.push("stopped"));
    // A turn of the event loop: a stop that did not wait for the run would have resolved by now.
    await new Promise((r) => setImmediate(r));
    order.push("released");
    release();
    await stopping;
    expect(order).toEqual(["run started", "released", "run finished", "stopped"]);
    // Nothing is scheduled after the stop, however far the clock moves.
    expect(timers.size).toBe(0);
    timers.advance(3_600_000);
    expect(order.filter((o) => o === "run started")).toHaveLength(1);
  });

  test("a run that fails is logged and the next one still comes at its time", async () => {
    const { timers, lines, ctx } = harness();
    let runs = 0;
    const task = approvalExpiry(ctx, {
      expireDue: async () => {
        if (++runs === 1) throw new Error("database is locked");
        return 2;
      },
    });
    task.start();
    timers.advance(5000);
    await until("the next run to be scheduled", () => timers.size === 1);
    expect(lines.find((l) => l.msg === "approval expiry failed")).toMatchObject({ level: "error" });
    timers.advance(5000);
    await until("the second run's line", () => lines.some((l) => l.msg === "approvals expired"));
    expect(lines.find((l) => l.msg === "approvals expired")).toMatchObject({ approvals: 2 });
    await task.stop();
  });

  test("ended console sessions are removed hourly at 47 past, and the count is logged", async () => {
    const { clock, timers, lines, ctx } = harness();
    let runs = 0;
    const task = sessionPurge(ctx, { purgeSessions: async () => (++runs === 1 ? 3 : 0) });
    task.start();
    const due = hourlyAt(47)(clock.now());
    timers.advance(due - clock.now() - 1);
    expect(runs).toBe(0);
    timers.advance(1);
    await until("the purge's line", () => lines.some((l) => l.msg === "ended console sessions removed"));
    expect(lines.find((l) => l.msg === "ended console sessions removed")).toMatchObject({ sessions: 3 });
    await until("the next purge to be scheduled", () => timers.size === 1);
    timers.advance(3_600_000);
    await until("the second purge", () => runs === 2);
    await task.stop();
  });

  test("the retention sweep runs hourly at 17 past and purges the spool up to the retention before the clock's now", async () => {
    const { clock, timers, lines, ctx } = harness();
    const cutoffs: number[] = [];
    const task = retentionSweep(
      ctx,
      {
        queue: { sweep: async (ms) => ({ expired: ms === 7_000 ? 1 : -1, purged: 2 }) },
        outbox: { purge: async (ms) => (ms === 7_000 ? 3 : -1) },
        spool: {
          purge: (cutoff) => {
            cutoffs.push(cutoff);
            return { segments: 4, bytes: 5 };
          },
        },
      },
      { retentionMs: 7_000, spoolRetentionMs: 86_400_000 },
    );
    task.start();
    const due = hourlyAt(17)(clock.now());
    timers.advance(due - clock.now() - 1);
    expect(cutoffs).toEqual([]);
    timers.advance(1);
    await until("the sweep's line", () => lines.some((l) => l.msg === "retention sweep"));
    expect(cutoffs).toEqual([due - 86_400_000]);
    expect(lines.find((l) => l.msg === "retention sweep")).toMatchObject({
      expired: 1,
      purged: 2,
      outbox_purged: 3,
      spool_segments_purged: 4,
      spool_bytes_purged: 5,
    });
    await until("the next sweep to be scheduled", () => timers.size === 1);
    timers.advance(3_600_000);
    await until("the second sweep", () => cutoffs.length === 2);
    await task.stop();
  });

  test("rotation reminders run at start, name overdue and soon-due secrets by the clock, and emit each on the outbox", async () => {
    const { clock, lines, ctx } = harness();
    const emitted: unknown[] = [];
    const now = clock.now();
    const task = rotationReminders(
      ctx,
      {
        dueForRotation: async () => [
          { tenant: "beta", name: "old", version: 2, rotationDueAt: now - 1 },
          { tenant: "beta", name: "soon", version: 1, rotationDueAt: now + 86_400_000 },
        ],
      },
      { emit: async (e) => `${emitted.push(e)}` },
    );
    task.start();
    await until("both reminders", () => emitted.length === 2);
    expect(lines.filter((l) => l.msg?.toString().startsWith("secret rotation")).map((l) => [l.msg, l.scope])).toEqual([
      ["secret rotation overdue", "beta/old"],
      ["secret rotation due soon", "beta/soon"],
    ]);
    expect(emitted[0]).toMatchObject({ topic: "secret.rotation_due", tenant: "beta", payload: { overdue: true } });
    await task.stop();
  });
});
