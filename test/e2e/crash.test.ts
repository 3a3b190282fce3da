import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";
import { ManualClock } from "../../src/core/clock.ts";
import { openSqliteStorage } from "../../src/store/index.ts";

const CHILD = join(import.meta.dir, "../fixtures/crash-child.ts");
const children: Subprocess[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "agentowl-crash-"));
  dirs.push(d);
  return d;
}

/**
 * Start the child, collect the lines it printed, and SIGKILL it once `killWhen` says so:
 * mid-flight, with commits in progress. Returns every line printed before the kill.
 */
async function runAndKill(args: string[], killWhen: (lines: string[]) => boolean): Promise<string[]> {
  const child = spawn([process.execPath, CHILD, ...args], { stdout: "pipe", stderr: "inherit" });
  children.push(child);
  const lines: string[] = [];
  const decoder = new TextDecoder();
  let partial = "";
  const deadline = Date.now() + 20_000;
  for await (const chunk of child.stdout) {
    const text = partial + decoder.decode(chunk, { stream: true });
    const parts = text.split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
    if (killWhen(lines) || Date.now() > deadline) {
      child.kill("SIGKILL");
      break;
    }
  }
  await child.exited;
  expect(child.signalCode).toBe("SIGKILL");
  return lines;
}

describe("crash safety (SIGKILL)", () => {
  test("every acknowledged enqueue survives SIGKILL, exactly once, across repeated crashes", async () => {
    const dir = tempDir();
    const acked: string[] = [];
    for (let run = 0; run < 3; run++) {
      // Kill at a different point each time, while 50 producers are mid-batch.
      const target = 1500 + run * 700;
      const lines = await runAndKill(["produce", dir, `r${run}`], (l) => l.length > target);
      acked.push(...lines.filter((l) => l.startsWith("ack ")).map((l) => l.slice(4)));
    }
    expect(acked.length).toBeGreaterThan(4000);

    const storage = openSqliteStorage({ dir });
    const rows = storage.handle.sqlite
      .query<{ key: string; n: number }, []>(
        "SELECT idempotency_key AS key, count(*) AS n FROM jobs GROUP BY idempotency_key",
      )
      .all();
    await storage.close();
    const stored = new Map(rows.map((r) => [r.key, r.n]));
    const lost = acked.filter((k) => !stored.has(k));
    expect(lost).toEqual([]);
    expect(rows.filter((r) => r.n !== 1)).toEqual([]);
    // Some commits may have landed after the last line the test read: never fewer, maybe more.
    expect(rows.length).toBeGreaterThanOrEqual(acked.length);
  });

  test("a job acked before SIGKILL stays done; the rest are recovered and each finishes once", async () => {
    const dir = tempDir();
    const total = 5000;
    let storage = openSqliteStorage({ dir });
    await Promise.all(
      Array.from({ length: total }, (_, i) => storage.queue.enqueue({ kind: "crash.item", payload: { i } })),
    );
    await storage.close();

    const lines = await runAndKill(["consume", dir], (l) => l.filter((x) => x.startsWith("done ")).length > 2000);
    const doneBeforeCrash = new Set(lines.filter((l) => l.startsWith("done ")).map((l) => l.slice(5)));
    expect(doneBeforeCrash.size).toBeGreaterThan(2000);

    // Restart "ten minutes later": the dead consumer's leases have expired.
    const clock = new ManualClock(Date.now() + 10 * 60_000);
    storage = openSqliteStorage({ dir, clock });
    for (const id of doneBeforeCrash) expect((await storage.queue.get(id))?.state).toBe("done");
    const depth = await storage.queue.depth();
    expect(depth.available + depth.leased + depth.done).toBe(total);

    await storage.queue.recoverExpired();
    expect((await storage.queue.depth()).leased).toBe(0);
    const rerun = new Set<string>();
    for (;;) {
      const jobs = await storage.queue.lease({ limit: 500, visibilityMs: 60_000 });
      if (jobs.length === 0) break;
      for (const job of jobs) {
        rerun.add(job.id);
        expect(await storage.queue.ack(job)).toBe(true);
      }
    }
    // At least once: everything not acked before the crash runs again; nothing acked runs twice.
    expect([...rerun].filter((id) => doneBeforeCrash.has(id))).toEqual([]);
    expect(await storage.queue.depth()).toMatchObject({ available: 0, leased: 0, done: total, dead: 0 });
    const rows = storage.handle.sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM jobs").get()!.n;
    expect(rows).toBe(total);
    await storage.close();
  });

  test("two processes leasing from one queue never run the same job twice", async () => {
    const dir = tempDir();
    const total = 10_000;
    const storage = openSqliteStorage({ dir });
    await Promise.all(
      Array.from({ length: total }, (_, i) => storage.queue.enqueue({ kind: "crash.item", payload: { i } })),
    );
    await storage.close();

    const doneIds = (lines: string[]) => lines.filter((l) => l.startsWith("done ")).map((l) => l.slice(5));
    // Both start together (a barrier file written once both are ready); each is stopped once it
    // finds the queue drained (it is idle then, nothing in flight).
    const go = join(dir, "go");
    const ready = new Set<string>();
    const watch = (who: string) => (lines: string[]) => {
      if (lines.includes("ready") && !ready.has(who)) {
        ready.add(who);
        if (ready.size === 2) writeFileSync(go, "");
      }
      return lines.at(-1) === "empty";
    };
    const [a, b] = await Promise.all([
      runAndKill(["consume", dir, go], watch("a")),
      runAndKill(["consume", dir, go], watch("b")),
    ]);
    const all = [...doneIds(a), ...doneIds(b)];
    expect(doneIds(a).length).toBeGreaterThan(0);
    expect(doneIds(b).length).toBeGreaterThan(0);
    expect(all.length).toBe(total);
    expect(new Set(all).size).toBe(total);
  });
});
