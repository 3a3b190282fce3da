/**
 * A stop with a delivery in flight on the dispatcher's fast path (started by routing itself,
 * outside the job runner; on SQLite it holds no job). A graceful stop waits for it: the receiver
 * gets it once, it is recorded as delivered, and nothing is left for the next start. A stop that
 * runs out of time leaves it `delivering`, and the next start sends it again (at least once).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApp } from "../../src/app/app.ts";
import { silentLogger } from "../../src/core/log.ts";
import { apiCaller } from "../helpers/api.ts";
import { sqliteOf, until } from "../helpers/storage.ts";
import { loopbackConfig } from "../helpers/app.ts";
import { DELIVERY_JOB } from "../../src/dispatch/dispatcher.ts";

const BOOTSTRAP = "bootstrap-dispatch-stop-7c1e3a5b9d2f4e6a";
const root = mkdtempSync(join(tmpdir(), "agentowl-dispatch-stop-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Tenant beta: an unsigned webhook binding, every event routed to the receiver on `port`. */
async function configure(call: ReturnType<typeof apiCaller>, port: number | undefined): Promise<void> {
  expect((await call("POST", "/v1/tenants", { body: { name: "beta" } })).status).toBe(201);
  for (const [kind, body] of [
    ["endpoints", { name: "slow", url: `http://127.0.0.1:${port}/` }],
    ["bindings", { name: "hooks", type: "webhook", verify: { scheme: "none" } }],
    ["routes", { name: "all", default: true, to: ["slow"] }],
  ] as const) {
    expect((await call("POST", `/v1/tenants/beta/${kind}`, { body })).status).toBe(201);
  }
}

test("stop waits for a fast-path delivery in flight; it ends delivered, once, nothing left to run", async () => {
  const arrivals: string[] = [];
  let answered = 0;
  const receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      arrivals.push(req.headers.get("webhook-id") ?? "");
      // The subject: a slow receiver, so that the delivery is still in flight when the stop begins.
      await Bun.sleep(800);
      answered++;
      return new Response("ok");
    },
  });
  const config = loopbackConfig(root, BOOTSTRAP);
  let app = await startApp({ config, log: silentLogger });
  const call = apiCaller(() => app.url, BOOTSTRAP);
  const send = async (): Promise<string> => {
    const r = await fetch(`${app.url}/ingress/webhook/beta/hooks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    return ((await r.json()) as { id: string }).id;
  };
  try {
    await configure(call, receiver.port);
    const eventId = await send();
    await until("the attempt reached the receiver", () => arrivals.length === 1, 10_000);
    const [d] = await sqliteOf(app).events.deliveries({ eventId, limit: 10 });
    expect(d!.state).toBe("delivering");

    const { forced } = await app.stop();
    expect(forced).toBe(false);
    expect(answered).toBe(1);

    // The next start finds it delivered: nothing runs again.
    app = await startApp({ config, log: silentLogger });
    const after = sqliteOf(app).events.delivery(d!.id)!;
    expect(after).toMatchObject({ state: "delivered", attempts: 1, lastStatus: 200 });
    // It went by the fast path: its attempt was audited in the routing commit.
    expect((after.trace as { name: string; detail?: string }[]).find((s) => s.name === "audit.log")?.detail).toContain(
      "in the routing commit",
    );
    // A later event is delivered: the restarted appliance is sending, and has not sent this one again.
    const laterEvent = await send();
    let later = "";
    await until(
      "a later delivery delivered",
      async () => {
        const [l] = await sqliteOf(app).events.deliveries({ eventId: laterEvent, limit: 10 });
        later = l?.id ?? "";
        return l?.state === "delivered";
      },
      10_000,
    );
    expect(arrivals.filter((id) => id !== later)).toEqual([d!.id]);
    expect(await sqliteOf(app).queue.recoverExpired({ all: true })).toBe(0);
  } finally {
    await app.stop();
    receiver.stop(true);
  }
});

test("a fast-path delivery a forced stop cut off is sent again at the next start, under the same webhook-id, and ends delivered", async () => {
  const arrivals: string[] = [];
  const receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      arrivals.push(req.headers.get("webhook-id") ?? "");
      // The first request outlasts the stop's deadline; the later ones are answered at once.
      if (arrivals.length === 1) await Bun.sleep(3000);
      return new Response("ok");
    },
  });
  const config = { ...loopbackConfig(root, BOOTSTRAP, {}, join(root, "forced")), shutdownTimeoutMs: 300 };
  let app = await startApp({ config, log: silentLogger });
  const call = apiCaller(() => app.url, BOOTSTRAP);
  try {
    await configure(call, receiver.port);
    const r = await fetch(`${app.url}/ingress/webhook/beta/hooks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    const eventId = ((await r.json()) as { id: string }).id;
    await until("the attempt reached the receiver", () => arrivals.length === 1, 10_000);
    const [d] = await sqliteOf(app).events.deliveries({ eventId, limit: 10 });
    expect((await call("GET", `/v1/deliveries/${d!.id}`)).body.waiting_for).toEqual({
      reason: "attempt_in_progress",
      until: null,
    });

    const { forced } = await app.stop();
    expect(forced).toBe(true);
    app = await startApp({ config, log: silentLogger });
    await until(
      "delivered after the restart",
      () => sqliteOf(app).events.delivery(d!.id)?.state === "delivered",
      10_000,
    );
    expect(arrivals).toEqual([d!.id, d!.id]);
    expect(await sqliteOf(app).queue.unfinished(DELIVERY_JOB, `delivery:${d!.id}`)).toBeNull();
    // Cut off, it had no job: its state had it recovered, once, at the start.
    const jobs = sqliteOf(app)
      .handle.sqlite.query<{ key: string; state: string }, [string]>(
        "SELECT idempotency_key AS key, state FROM jobs WHERE idempotency_key LIKE ?",
      )
      .all(`delivery:${d!.id}%`);
    expect(jobs).toEqual([{ key: `delivery:${d!.id}:recovered`, state: "done" }]);
  } finally {
    await app.stop();
    receiver.stop(true);
  }
});
