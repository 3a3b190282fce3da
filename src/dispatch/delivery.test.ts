import { describe, expect, test } from "bun:test";
import { testEnvelope } from "../../test/helpers/events.ts";
import { tempStorages } from "../../test/helpers/storage.ts";
import { ManualClock } from "../core/clock.ts";
import { newId } from "../core/ids.ts";
import { AppError } from "../errors/index.ts";
import type { DeliveryRow, Storage } from "../store/index.ts";
import { DELIVERY_JOB } from "./context.ts";
import { type DeliveryState, DeliveryWriter, mayMove, RefusedMove, TERMINAL } from "./delivery.ts";
import type { Attempt as PostResult } from "./post.ts";
import { TaskTrace } from "./trace.ts";

const storages = tempStorages();
const ALL: DeliveryState[] = [
  "pending",
  "awaiting_approval",
  "delivering",
  "retrying",
  "delivered",
  "dead",
  "denied",
  "quarantined",
  "discarded",
];

async function setup() {
  const clock = new ManualClock();
  const storage = storages({ clock });
  // As a subscriber to the deliveries' moves would: their announcements are then written.
  storage.outbox.follow(["delivery.*"]);
  const writer = new DeliveryWriter(storage);
  const envelope = testEnvelope("beta", 1);
  await storage.committer.run((tx) => storage.events.insertTx(tx, envelope));
  /** A delivery of the event to `endpoint`, in `state` (set up directly, as a past run left it). */
  const delivery = async (state: DeliveryState, endpoint = "crm"): Promise<DeliveryRow> => {
    const id = newId("dlv", clock.now());
    await storage.committer.run((tx) =>
      storage.events.insertDeliveryTx(tx, {
        id,
        eventId: envelope.id,
        tenant: "beta",
        endpoint,
        state,
        attempts: state === "pending" ? 0 : 2,
        createdAt: tx.now,
        updatedAt: tx.now,
      }),
    );
    return storage.events.delivery(id)!;
  };
  return { clock, storage, writer, envelope, delivery, trace: () => new TaskTrace(clock) };
}

/** The audit actions about delivery `d`, oldest first. */
const auditOf = async (storage: Storage, d: DeliveryRow) =>
  (await storage.audit.list({ limit: 100 }))
    .filter((e) => (e.details as { delivery?: string } | null)?.delivery === d.id)
    .map((e) => e.action)
    .reverse();
const topics = async (storage: Storage) => (await storage.outbox.read(0, 100)).map((e) => e.topic);

const post = (over: Partial<PostResult>): PostResult => ({
  ok: false,
  status: 500,
  latencyMs: 12.5,
  excerpt: "boom",
  errorClass: null,
  error: null,
  retryAfterMs: null,
  remoteAddress: "127.0.0.1",
  ...over,
});

describe("DeliveryWriter", () => {
  test("a new delivery is pending, or delivering with its decision and spans when routing decided it; one per event and endpoint", async () => {
    const { storage, writer, envelope, clock } = await setup();
    const spans = [
      { name: "policy.eval", start: new Date(clock.now()).toISOString(), duration_ms: 1, outcome: "ok" as const },
    ];
    const [pending, decided, repeat] = await storage.committer.run((tx) => [
      writer.insertTx(tx, { eventId: envelope.id, tenant: "beta", endpoint: "crm", route: "all" }),
      writer.insertTx(
        tx,
        { eventId: envelope.id, tenant: "beta", endpoint: "erp", route: "all" },
        { decision: { effect: "allow" }, trace: spans },
      ),
      writer.insertTx(tx, { eventId: envelope.id, tenant: "beta", endpoint: "crm", route: "all" }),
    ]);
    expect(storage.events.delivery(pending!.id)).toMatchObject({ state: "pending", decision: null, attempts: 0 });
    expect(storage.events.delivery(decided!.id)).toMatchObject({
      state: "delivering",
      decision: { effect: "allow" },
      trace: spans,
    });
    expect(repeat).toBeNull();
  });

  test("a job's run moves a delivery only along the state machine", () => {
    const allowed = ALL.flatMap((from) => ALL.filter((to) => mayMove(from, to)).map((to) => `${from}->${to}`));
    expect(allowed.sort()).toEqual(
      [
        "pending->delivering",
        "pending->awaiting_approval",
        "pending->denied",
        "pending->quarantined",
        "pending->dead",
        "awaiting_approval->delivering",
        "awaiting_approval->denied",
        "awaiting_approval->dead",
        "delivering->delivering",
        "delivering->retrying",
        "delivering->delivered",
        "delivering->dead",
        "retrying->retrying",
        "retrying->delivered",
        "retrying->dead",
      ].sort(),
    );
    for (const from of TERMINAL) expect(ALL.filter((to) => mayMove(from, to))).toEqual([]);
  });

  test("a move the state machine does not have is refused and writes nothing", async () => {
    const { storage, writer, delivery, trace } = await setup();
    const d = await delivery("pending");
    const t = trace();
    t.push("policy.eval", 0, 1, "ok");
    await expect(writer.checkpoint(d, t, { state: "delivered" }, { action: "delivery.delivered" })).rejects.toThrow(
      RefusedMove,
    );
    expect(storage.events.delivery(d.id)).toEqual(d);
    expect(await auditOf(storage, d)).toEqual([]);
    expect(await topics(storage)).toEqual([]);
  });

  test("a checkpoint carries the spans gathered since the last one, its audit entry and its announcement, in one commit", async () => {
    const { storage, writer, delivery, trace, clock } = await setup();
    const d = await delivery("pending");
    const t = trace();
    const began = t.begin();
    clock.advance(5);
    t.end(began, "policy.eval", "ok", "deny (policy refunds v1)");
    const { row } = await writer.checkpoint(
      d,
      t,
      { state: "denied", decision: { effect: "deny" } },
      { action: "delivery.deny", decision: "deny" },
    );
    expect(row.state).toBe("denied");
    const stored = storage.events.delivery(d.id)!;
    expect(stored).toMatchObject({ state: "denied", decision: { effect: "deny" }, updatedAt: clock.now() });
    expect(stored.trace).toEqual([
      expect.objectContaining({ name: "policy.eval", outcome: "ok", detail: "deny (policy refunds v1)" }),
    ]);
    // Taken by the checkpoint: the next one carries only what came after.
    expect(t.peek()).toEqual([]);
    expect(await auditOf(storage, d)).toEqual(["delivery.deny"]);
    expect(await topics(storage)).toEqual(["delivery.denied"]);
  });

  test("the attempt's audit entry commits before the request; the attempt row, its outcome and the job's ack commit together after it", async () => {
    const { storage, writer, delivery, trace, clock } = await setup();
    const d = await delivery("pending");
    await storage.queue.enqueue({ kind: DELIVERY_JOB, payload: { id: d.id }, idempotencyKey: `delivery:${d.id}` });
    const [job] = await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
    const t = trace();

    const started = await writer.beforeAttempt(d, t, { state: "delivering" }, "http://127.0.0.1:9/hook", 1);
    expect(started.state).toBe("delivering");
    expect(await auditOf(storage, d)).toEqual(["delivery.attempt"]);
    expect(await storage.events.attempts(d.id)).toEqual([]);

    const startedAt = clock.now();
    const outcome = await writer.afterAttempt(started, t, job!, {
      attempt: 1,
      startedAt,
      result: post({ ok: false, status: null, errorClass: "egress", error: "refused: 169.254.169.254" }),
      dead: true,
    });
    expect(outcome).toEqual({ state: "dead", lastError: "refused: 169.254.169.254", acked: true });
    expect(storage.events.delivery(d.id)).toMatchObject({
      state: "dead",
      attempts: 1,
      lastError: "refused: 169.254.169.254",
      firstAttemptAt: startedAt,
    });
    expect(await storage.events.attempts(d.id)).toEqual([
      expect.objectContaining({ attempt: 1, errorClass: "egress", latencyMs: 13, excerpt: "boom" }),
    ]);
    expect(await auditOf(storage, d)).toEqual(["delivery.attempt", "delivery.dead"]);
    expect((await storage.queue.get(job!.id))?.state).toBe("done");
    expect(await topics(storage)).toEqual(["delivery.dead"]);
  });

  test("a move no subscriber follows is counted as announced, and no outbox entry is written for it", async () => {
    const clock = new ManualClock();
    const storage = storages({ clock });
    const counted: string[] = [];
    storage.outbox.onCommitted((topic) => counted.push(topic));
    storage.outbox.follow(["approval.decided"]);
    const writer = new DeliveryWriter(storage);
    const envelope = testEnvelope("beta", 1);
    await storage.committer.run((tx) => storage.events.insertTx(tx, envelope));
    const d = await storage.committer.run((tx) =>
      writer.insertTx(tx, { eventId: envelope.id, tenant: "beta", endpoint: "crm", route: null }),
    );
    await storage.queue.enqueue({ kind: DELIVERY_JOB, payload: { id: d!.id } });
    const [job] = await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
    const t = new TaskTrace(clock);
    const started = await writer.beforeAttempt(d!, t, { state: "delivering" }, "http://127.0.0.1:9/hook", 1);
    const outcome = await writer.afterAttempt(started, t, job!, {
      attempt: 1,
      startedAt: clock.now(),
      result: post({ ok: true, status: 200 }),
      dead: false,
    });
    expect(outcome).toMatchObject({ state: "delivered", acked: true });
    expect(counted).toEqual(["delivery.delivered"]);
    expect(await topics(storage)).toEqual([]);
  });

  test("a retry leaves the job to be failed by its runner; an attempt's row and the rest of its commit stand or fall together", async () => {
    const { storage, writer, delivery, trace } = await setup();
    const d = await delivery("delivering");
    await storage.queue.enqueue({ kind: DELIVERY_JOB, payload: { id: d.id }, idempotencyKey: `delivery:${d.id}` });
    const [job] = await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
    const outcome = await writer.afterAttempt(d, trace(), job!, {
      attempt: 3,
      startedAt: 1,
      result: post({ status: 503 }),
      dead: false,
    });
    expect(outcome).toEqual({ state: "retrying", lastError: "HTTP 503", acked: false });
    expect((await storage.queue.get(job!.id))?.state).toBe("leased");

    const retrying = storage.events.delivery(d.id)!;
    const failing = writer.checkpoint(retrying, trace(), { state: "dead" }, { action: "delivery.dead" }, (tx) => {
      (storage as Storage).events.insertAttemptTx(tx, { deliveryId: d.id, attempt: 4, startedAt: 2, latencyMs: 1 });
      throw new Error("disk full");
    });
    await expect(failing).rejects.toThrow("disk full");
    expect((await storage.events.attempts(d.id)).map((a) => a.attempt)).toEqual([3]);
    expect(storage.events.delivery(d.id)?.state).toBe("retrying");
    expect(await auditOf(storage, d)).toEqual([]);
  });

  test("a finished delivery is never checkpointed again, whatever the move", async () => {
    const { storage, writer, delivery, trace } = await setup();
    for (const state of TERMINAL) {
      const d = await delivery(state, `ep-${state}`);
      for (const to of ALL) {
        await expect(writer.checkpoint(d, trace(), { state: to })).rejects.toThrow(RefusedMove);
      }
      expect(storage.events.delivery(d.id)).toEqual(d);
    }
    expect(await topics(storage)).toEqual([]);
  });

  test("a delivery an operator discards while its attempt is in flight stays discarded", async () => {
    const { storage, writer, delivery, trace } = await setup();
    const d = await delivery("retrying");
    await storage.queue.enqueue({ kind: DELIVERY_JOB, payload: { id: d.id }, idempotencyKey: `delivery:${d.id}` });
    const [job] = await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
    await storage.committer.run((tx) => writer.discardTx(tx, d, "ops@example.test"));
    await writer.afterAttempt(d, trace(), job!, {
      attempt: 3,
      startedAt: 1,
      result: post({ ok: true, status: 200 }),
      dead: false,
    });
    expect(storage.events.delivery(d.id)?.state).toBe("discarded");
  });

  test("an operator retries only a dead delivery, with a fresh budget, announced and audited with who asked", async () => {
    const { storage, writer, delivery } = await setup();
    const dead = await delivery("dead");
    const retried = await storage.committer.run((tx) => writer.retryTx(tx, dead, "ops@example.test"));
    expect(retried).toMatchObject({
      state: "delivering",
      attemptBase: 2,
      firstAttemptAt: null,
      requestedBy: "ops@example.test",
    });
    expect(await topics(storage)).toEqual(["delivery.retried"]);
    const entries = (await storage.audit.list({ limit: 10 })).filter((e) => e.action === "delivery.retry");
    expect(entries.map((e) => e.actor)).toEqual(["ops@example.test"]);

    for (const state of ALL.filter((s) => s !== "dead")) {
      const d = await delivery(state, `ep-${state}`);
      const refused = storage.committer.run((tx) => writer.retryTx(tx, d, "ops@example.test"));
      await expect(refused).rejects.toBeInstanceOf(AppError);
      expect(storage.events.delivery(d.id)?.state).toBe(state);
    }
  });

  test("an operator discards only a dead or retrying delivery", async () => {
    const { storage, writer, delivery } = await setup();
    for (const state of ALL) {
      const d = await delivery(state, `ep-${state}`);
      const discard = storage.committer.run((tx) => writer.discardTx(tx, d, "ops@example.test"));
      if (state === "dead" || state === "retrying") {
        expect((await discard).state).toBe("discarded");
      } else {
        await expect(discard).rejects.toBeInstanceOf(AppError);
        expect(storage.events.delivery(d.id)?.state).toBe(state);
      }
    }
    expect(await topics(storage)).toEqual(["delivery.discarded", "delivery.discarded"]);
  });
});
