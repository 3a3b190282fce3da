import { expect, test } from "bun:test";
import { testEnvelope } from "../../../test/helpers/events.ts";
import { spanOf } from "../../events/envelope.ts";
import { tempStorages } from "../../../test/helpers/storage.ts";
import { eventsInRangeSql } from "./events.ts";

const storage = tempStorages();

let second = 0;
/** A webhook event of tenant beta with its own idempotency key. */
const envelope = (key: string) => testEnvelope("beta", second++, { idempotency_key: key });

test("routing gets a just-inserted event from memory once, then from its row, and nothing once it is routed", async () => {
  const s = storage();
  const e = envelope("k1");
  const r = await s.committer.run((tx) => s.events.insertTx(tx, e));
  expect(r).toEqual({ id: e.id, created: true });
  expect(s.events.unroutedEvent(e.id)).toEqual({ envelope: e, tenant: "beta" });
  // A second ask (a routing batch that failed and runs again) reads the row: the same event.
  expect(s.events.unroutedEvent(e.id)).toEqual({ envelope: e, tenant: "beta" });
  await s.committer.run((tx) => s.events.setRoutingTx(tx, e.id, { unrouted: true }));
  expect(s.events.unroutedEvent(e.id)).toBeNull();
});

test("a repeat of an idempotency key is not handed to routing again", async () => {
  const s = storage();
  const first = envelope("k2");
  await s.committer.run((tx) => s.events.insertTx(tx, first));
  expect(s.events.unroutedEvent(first.id)).not.toBeNull();
  await s.committer.run((tx) => s.events.setRoutingTx(tx, first.id, { unrouted: true }));
  const repeat = envelope("k2");
  expect(await s.committer.run((tx) => s.events.insertTx(tx, repeat))).toEqual({ id: first.id, created: false });
  expect(s.events.unroutedEvent(repeat.id)).toBeNull();
  expect(s.events.unroutedEvent(first.id)).toBeNull();
});

test("an event too big to keep in memory, or past the memory budget, reaches routing from its row", async () => {
  const s = storage();
  const big = { ...envelope("k3"), data: { text: "x".repeat(100_000) } };
  const many = Array.from({ length: 200 }, (_, i) => ({ ...envelope(`m${i}`), data: { text: "y".repeat(60_000) } }));
  await s.committer.run((tx) => s.events.insertTx(tx, big));
  await Promise.all(many.map((e) => s.committer.run((tx) => s.events.insertTx(tx, e))));
  expect(s.events.unroutedEvent(big.id)).toEqual({ envelope: big, tenant: "beta" });
  // 200 × 60 KB is past the 8 MiB budget: the oldest went, and are read back from their rows.
  for (const e of many) expect(s.events.unroutedEvent(e.id)?.envelope).toEqual(e);
});

test("a trace is stored as tuples, and a row written before (spans as objects) reads and grows as it did", async () => {
  const s = storage();
  const at = Date.parse("2026-12-06T17:59:41.882Z");
  const e = envelope("k-trace");
  const spans = [spanOf("ingress.verify", at, 0.001), spanOf("route", at, 0.01, "ok", "receiver")];
  await s.committer.run((tx) => s.events.insertTx(tx, e, spans));
  const raw = () =>
    JSON.parse(
      s.handle.sqlite.query<{ trace: string }, [string]>("SELECT trace FROM events WHERE id = ?").get(e.id)!.trace,
    );
  expect(raw()).toEqual([
    ["ingress.verify", at, 0.001, "ok"],
    ["route", at, 0.01, "ok", "receiver"],
  ]);
  // As a version before this encoding wrote it.
  s.handle.sqlite.query("UPDATE events SET trace = ? WHERE id = ?").run(JSON.stringify(spans), e.id);
  expect((await s.events.get(e.id))?.trace).toEqual(spans);
  const later = spanOf("route", at + 5, 2, "ok", "again");
  await s.committer.run((tx) => s.events.setRoutingTx(tx, e.id, { unrouted: false }, [later]));
  expect((await s.events.get(e.id))?.trace).toEqual([...spans, later]);
  expect(raw()).toEqual([...spans, ["route", at + 5, 2, "ok", "again"]]);
});

test("rates count events by id range from an index alone: no index on received_at, no table row read", async () => {
  const s = storage();
  const sqlite = s.handle.sqlite;
  expect(sqlite.query("SELECT name FROM pragma_index_list('events') WHERE name = 'events_received'").all()).toEqual([]);
  // Three events in the first minute of testEnvelope's clock, one in the second, for two tenants.
  for (const [tenant, at] of [
    ["beta", 0],
    ["beta", 59],
    ["alpha", 30],
    ["beta", 60],
  ] as const)
    await s.committer.run((tx) => s.events.insertTx(tx, testEnvelope(tenant, at)));
  const since = Date.UTC(2026, 10, 21, 14, 0, 0);
  const q = { since, until: since + 120_000, bucketMs: 60_000 };
  expect((await s.events.rates(q)).events).toEqual([3, 1]);
  expect((await s.events.rates({ ...q, tenants: ["beta"] })).events).toEqual([2, 1]);
  expect((await s.events.rates({ ...q, tenants: ["alpha"] })).events).toEqual([1, 0]);
  const plan = (sql: string, ...args: string[]) =>
    sqlite
      .query<{ detail: string }, string[]>(`EXPLAIN QUERY PLAN ${sql}`)
      .all(...args)
      .map((r) => r.detail)
      .join("; ");
  expect(plan(eventsInRangeSql(0), "evt_0", "evt_1")).toContain("COVERING INDEX");
  expect(plan(eventsInRangeSql(2), "alpha", "beta", "evt_0", "evt_1")).toContain("COVERING INDEX events_tenant");
});
