import { describe, expect, test } from "bun:test";
import { testEnvelope } from "../../test/helpers/events.ts";
import { tempStorages } from "../../test/helpers/storage.ts";
import { ManualClock } from "../core/clock.ts";
import { newId } from "../core/ids.ts";
import type { DeliveryRow, Storage } from "../store/index.ts";
import { DELIVERY_JOB, deliveryJob } from "./context.ts";
import type { DeliveryState } from "./delivery.ts";
import { recoverFastAttempts } from "./fast-path.ts";

const storages = tempStorages();

async function setup() {
  const clock = new ManualClock();
  const storage = storages({ clock });
  const envelope = testEnvelope("beta", 1);
  await storage.committer.run((tx) => storage.events.insertTx(tx, envelope));
  const delivery = async (state: DeliveryState, endpoint: string): Promise<DeliveryRow> => {
    const id = newId("dlv", clock.now());
    await storage.committer.run((tx) =>
      storage.events.insertDeliveryTx(tx, {
        id,
        eventId: envelope.id,
        tenant: "beta",
        endpoint,
        state,
        createdAt: tx.now,
        updatedAt: tx.now,
      }),
    );
    return storage.events.delivery(id)!;
  };
  return { clock, storage, delivery };
}

describe("recoverFastAttempts", () => {
  test("a fast attempt cut off by a crash (delivering, no job) gets a job due now; one that has a job does not get another", async () => {
    const { clock, storage, delivery } = await setup();
    const cutOff = await delivery("delivering", "crm");
    const working = await delivery("delivering", "erp");
    const waiting = await delivery("pending", "billing");
    await storage.committer.run((tx) => {
      tx.enqueue(deliveryJob(working, `delivery:${working.id}`));
      tx.enqueue(deliveryJob(waiting, `delivery:${waiting.id}`));
    });

    expect(await recoverFastAttempts(storage)).toBe(1);
    const job = await storage.queue.unfinished(DELIVERY_JOB, `delivery:${cutOff.id}`);
    expect(job).toMatchObject({ state: "available", runAt: clock.now(), payload: { id: cutOff.id } });
    // Run again (another start before the job ran): nothing more.
    expect(await recoverFastAttempts(storage)).toBe(0);
  });

  test("once per delivery: a recovered job that died does not bring its delivery back at every start", async () => {
    const { storage, delivery } = await setup();
    const cutOff = await delivery("delivering", "crm");
    expect(await recoverFastAttempts(storage)).toBe(1);
    const [job] = await storage.queue.lease({ limit: 1, visibilityMs: 60_000 });
    expect(job!.payload).toEqual({ id: cutOff.id });
    expect(await storage.queue.fail(job!, { message: "kills the process", retryable: false })).toMatchObject({
      state: "dead",
    });
    expect(await recoverFastAttempts(storage)).toBe(0);
    expect(await storage.queue.unfinished(DELIVERY_JOB, `delivery:${cutOff.id}`)).toBeNull();
  });

  test("on a shared database the fast path's jobs are leased, and there is nothing to recover here", async () => {
    const { storage, delivery } = await setup();
    await delivery("delivering", "crm");
    expect(await recoverFastAttempts({ ...storage, shared: true } as unknown as Storage)).toBe(0);
  });
});
