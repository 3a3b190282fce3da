import { expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { checkpointFile } from "../../audit/anchor.ts";
import { ManualClock } from "../../core/clock.ts";
import { chainKeysFrom } from "../../audit/keys.ts";
import { testEnvelope } from "../../../test/helpers/events.ts";
import { tempStorages } from "../../../test/helpers/storage.ts";
import { cutoffs } from "../../workers/maintenance.ts";
import { readCheckpoints } from "../audit-checkpoints.ts";

const storages = tempStorages();
const BASE = Date.UTC(2026, 10, 21, 14, 0, 0);
const DAY = 86_400_000;
const KEYS = chainKeysFrom(Buffer.alloc(32, 7));

type S = ReturnType<typeof storages>;

/** An event `ageDays` before BASE + 100 days, with an attachment and a delivery with one attempt. */
async function event(s: S, tenant: string, day: number, blob: string): Promise<string> {
  const e = testEnvelope(tenant, day * 86_400, {
    channel: "email",
    type: "email.received",
    data: {
      from: { address: "a@b.example" },
      subject: `day ${day}`,
      text: "body",
      attachments: [{ sha256: blob, size: 1 }],
    },
  });
  return s.committer.run((tx) => {
    const { id } = s.events.insertTx(tx, e);
    const delivery = `dlv_${tenant}_${day}`;
    s.events.insertDeliveryTx(tx, {
      ...{ id: delivery, eventId: id, tenant, endpoint: "crm", state: "delivered", attempts: 1 },
      ...{ lastStatus: 200, lastError: null, createdAt: tx.now, updatedAt: tx.now },
    });
    s.events.insertAttemptTx(tx, { deliveryId: delivery, attempt: 1, startedAt: BASE + day * DAY, latencyMs: 5 });
    return id;
  });
}

const NOW = BASE + 100 * DAY;

test("retention removes what is older than each tenant's retention and nothing younger", async () => {
  const s = storages();
  const shared = (await s.blobs.put(new TextEncoder().encode("shared"))).sha256;
  const alone = (await s.blobs.put(new TextEncoder().encode("alone"))).sha256;
  // Days 0..99: tenant "short" keeps events 30 days, content 10; "long" uses the defaults (60, 20).
  for (const day of [10, 75, 85, 95]) await event(s, "short", day, day === 85 ? alone : shared);
  for (const day of [10, 35, 45, 95]) await event(s, "long", day, shared);
  const tenants = (map: Record<string, number>) => new Map(Object.entries(map).map(([t, d]) => [t, d * DAY]));
  const swept = await s.retention.sweep({
    events: cutoffs(NOW, 60 * DAY, tenants({ short: 30 })),
    content: cutoffs(NOW, 20 * DAY, tenants({ short: 10 })),
    attempts: cutoffs(NOW, 50 * DAY, tenants({})),
  });
  const rows = s.handle.sqlite
    .query<{ tenant: string; subject: string; pruned: number | null; text: string | null }, []>(
      "SELECT tenant, json_extract(envelope, '$.data.subject') AS subject, json_extract(envelope, '$.data.content_pruned_at') AS pruned, " +
        "json_extract(envelope, '$.data.text') AS text FROM events ORDER BY tenant, received_at",
    )
    .all();
  // Events: short keeps 75, 85, 95 (30 days); long keeps 45, 95 (60 days; 35 is 65 days old).
  expect(rows.map((r) => `${r.tenant} ${r.subject} ${r.pruned ? "pruned" : r.text}`)).toEqual([
    "long day 45 pruned",
    "long day 95 body",
    "short day 75 pruned",
    "short day 85 pruned",
    "short day 95 body",
  ]);
  expect(swept).toMatchObject({ events: 3, contents: 3 });
  // Attempts: older than 50 days went, the deliveries stay with their events.
  const attempts = s.handle.sqlite.query<{ started_at: number }, []>("SELECT started_at FROM delivery_attempts").all();
  expect(attempts.map((a) => (a.started_at - BASE) / DAY).sort((a, b) => a - b)).toEqual([75, 85, 95, 95]);
  // The blob only a pruned event named is gone; the one kept events still name stays.
  expect(await s.blobs.has(alone)).toBe(false);
  expect(await s.blobs.has(shared)).toBe(true);
  expect(swept.blobs).toBe(1);
});

test("deleted agent runtimes older than their tenant's event retention go with their tools and tool calls; live and younger ones stay", async () => {
  const clock = new ManualClock(BASE);
  const s = storages({ clock });
  const at = (t: number) => clock.advance(t - clock.now());
  // Runtime `name` made on `day`, deleted on `deletedDay` (or still live), claimed by `tenant` (or never).
  const runtime = async (name: string, tenant: string | null, day: number, deletedDay: number | null) => {
    at(BASE + day * DAY);
    const id = `rt_${name}`;
    await s.agents.insertRuntime({
      ...{ id, isolation: "process", tokenHash: `hash-${id}`, cold: false, createdAt: clock.now() },
      ...{ dir: `/data/agents/rt/${id}`, socket: `/data/agents/run/${id}.sock` },
    });
    await s.committer.run((tx) => {
      if (tenant) {
        s.agents.transitionRuntimeTx(tx, id, ["starting"], {
          ...{ state: "claimed", tenant, agent: name, template: "t", templateVersion: 1, claimedAt: tx.now },
        });
        s.agents.insertToolTx(tx, {
          ...{ runtimeId: id, tenant, tool: "email", plugin: "email", provisioning: "pool", state: "destroyed" },
          ...{ resourceId: `${name}@x.example`, config: {}, secretRef: null },
        });
        s.agents.insertToolCallTx(tx, {
          ...{ runtimeId: id, tenant, eventId: null, tool: "email", args: {}, state: "done", approvalId: null },
          ...{ decision: { effect: "allow" }, result: null, error: null },
        });
      }
    });
    if (deletedDay !== null) {
      at(BASE + deletedDay * DAY);
      await s.agents.transitionRuntime(id, ["starting", "claimed"], { state: "deleted", deletedAt: clock.now() });
    }
  };
  // Tenant "short" keeps events 30 days; the default (and a warm runtime never claimed) 60.
  await runtime("short_old", "short", 20, 25); // deleted 75 days ago: goes
  await runtime("short_young", "short", 60, 80); // deleted 20 days ago: stays
  await runtime("long_mid", "long", 20, 50); // deleted 50 days ago, within the default 60: stays
  await runtime("long_old", "long", 5, 30); // deleted 70 days ago: goes
  await runtime("warm_old", null, 1, 2); // never claimed, deleted 98 days ago: goes
  await runtime("live_old", "short", 1, null); // claimed 99 days ago and still live: stays
  at(NOW);
  const swept = await s.retention.sweep({
    events: cutoffs(NOW, 60 * DAY, new Map([["short", 30 * DAY]])),
    content: cutoffs(NOW, 60 * DAY, new Map()),
    attempts: cutoffs(NOW, 60 * DAY, new Map()),
  });
  expect(swept.runtimes).toBe(3);
  const ids = (table: string) =>
    s.handle.sqlite
      .query<{ id: string }, []>(
        `SELECT ${table === "agent_runtimes" ? "id" : "runtime_id AS id"} FROM ${table} ORDER BY 1`,
      )
      .all()
      .map((r) => r.id);
  expect(ids("agent_runtimes")).toEqual(["rt_live_old", "rt_long_mid", "rt_short_young"]);
  expect(ids("agent_tools")).toEqual(["rt_live_old", "rt_long_mid", "rt_short_young"]);
  expect(ids("agent_tool_calls")).toEqual(["rt_live_old", "rt_long_mid", "rt_short_young"]);
  // The pool's history still counts the deleted ones kept.
  expect((await s.agents.countByState()).deleted).toBe(2);
  // The page walks the state index in rowid order: no sort, no table scan.
  const plan = s.handle.sqlite
    .query<{ detail: string }, []>(
      "EXPLAIN QUERY PLAN SELECT rowid, id, tenant, deleted_at FROM agent_runtimes WHERE state = 'deleted' AND rowid > 0 ORDER BY rowid LIMIT 10",
    )
    .all()
    .map((r) => r.detail);
  expect(plan).toEqual([expect.stringContaining("USING INDEX agent_runtimes_state")]);
});

test("the audit chain still verifies after its old entries are pruned, from the signed checkpoint of the pruned prefix", async () => {
  const clock = new ManualClock(BASE);
  const t = storages({ clock });
  const file = checkpointFile(t.dir);
  t.audit.anchor({ keys: KEYS, file, everyEntries: 1000, everyMs: 0 });
  // One entry every 2.5 days over 100 days, the tenants taking turns.
  for (let i = 0; i < 40; i++) {
    await t.audit.append({ actor: "system", tenant: i % 2 ? "short" : "long", action: "test.entry", details: { i } });
    clock.advance(2.5 * DAY);
  }
  expect((await t.audit.verify()).ok).toBe(true);
  const row = (seq: number) =>
    t.handle.sqlite
      .query<{ at: number; tenant: string }, [number]>("SELECT at, tenant FROM audit_log WHERE seq = ?")
      .get(seq);
  // short keeps 30 days, long 60: the prefix goes up to the first entry either keeps.
  const cut = cutoffs(NOW, 60 * DAY, new Map([["short", 30 * DAY]]));
  const pruned = await t.audit.prune(cut.cutoffFor);
  expect(pruned.entries).toBe(pruned.through);
  expect(pruned.through).toBeGreaterThan(0);
  // The first entry left is one its tenant keeps; every pruned one was older than its tenant's cutoff.
  const first = pruned.through + 1;
  expect(row(first)!.at).toBeGreaterThanOrEqual(cut.cutoffFor(row(first)!.tenant));
  expect(row(pruned.through)).toBeNull();
  expect(BASE + (pruned.through - 1) * 2.5 * DAY).toBeLessThan(NOW - 60 * DAY);
  const cps = readCheckpoints(file, KEYS.checkpoint);
  expect(cps.problem).toBeNull();
  expect(cps.checkpoints.at(-1)).toMatchObject({ seq: 40, prunedThrough: pruned.through });
  const report = await t.audit.verify();
  expect(report.ok, report.problem ?? "").toBe(true);
  expect(report.entries).toBe(40 - pruned.through);
  // Pruning again with the same cutoffs removes nothing more; a plain DELETE is still refused.
  expect((await t.audit.prune(cut.cutoffFor)).entries).toBe(0);
  expect(() => t.handle.sqlite.run("DELETE FROM audit_log WHERE seq = ?", [first])).toThrow(/append-only/);
  // Someone who drops the trigger and deletes a kept entry from the start is caught.
  t.handle.sqlite.run("DROP TRIGGER audit_log_no_delete");
  t.handle.sqlite.run("DELETE FROM audit_log WHERE seq = ?", [first]);
  const broken = await t.audit.verify();
  expect(broken.ok).toBe(false);
  expect(broken.firstBroken?.seq).toBe(first + 1);
});

test("incremental vacuum gives the pages of a big delete back to the disk", async () => {
  const s = storages();
  expect(s.handle.sqlite.query<{ auto_vacuum: number }, []>("PRAGMA auto_vacuum").get()!.auto_vacuum).toBe(2);
  const big = "x".repeat(4000);
  for (let day = 0; day < 10; day++) {
    await s.committer.run((tx) => {
      for (let i = 0; i < 300; i++) s.events.insertTx(tx, testEnvelope("t", day * 86_400 + i, { data: { big } }));
    });
  }
  s.handle.sqlite.run("PRAGMA wal_checkpoint(TRUNCATE)");
  const db = join(s.dir, "agentowl.db");
  const before = statSync(db).size;
  const swept = await s.retention.sweep({
    events: cutoffs(NOW, 1, new Map()),
    content: cutoffs(NOW, 1, new Map()),
    attempts: cutoffs(NOW, 1, new Map()),
  });
  expect(swept.events).toBe(3000);
  const freed = await s.retention.vacuum();
  s.handle.sqlite.run("PRAGMA wal_checkpoint(TRUNCATE)");
  const after = statSync(db).size;
  expect(freed.bytes).toBeGreaterThan(10 * 1024 * 1024);
  expect(after).toBeLessThan(before / 4);
});
