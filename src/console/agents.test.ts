import { describe, expect, test } from "bun:test";
import { AgentsPage, renderPage } from "../../web/index.ts";
import type { PoolStatus, RuntimeRecord } from "../agents/types.ts";
import { RUNTIME_STATES } from "../agents/types.ts";
import { ASSET_PATHS } from "./assets.ts";
import { poolSummary, runtimeItem } from "./agents.ts";

const runtime: RuntimeRecord = {
  id: "rt_01JD0000000000000000000000",
  state: "claimed",
  isolation: "bwrap",
  tenant: "beta",
  agent: "hello",
  template: "support",
  templateVersion: 3,
  userConfig: null,
  tokenHash: "f".repeat(64),
  dir: "/data/agents/rt/x",
  socket: "/data/agents/run/x.sock",
  pid: 7,
  cold: false,
  createdAt: Date.UTC(2026, 10, 21, 14, 0, 0),
  readyAt: Date.UTC(2026, 10, 21, 14, 0, 1),
  claimedAt: Date.UTC(2026, 10, 21, 14, 5, 0),
  heartbeatAt: Date.UTC(2026, 10, 21, 14, 6, 0),
  syncedAt: null,
  stuckAt: null,
  deletedAt: null,
  destroying: false,
  error: null,
  node: null,
};

const status: PoolStatus = {
  minIdle: 2,
  isolation: "process",
  isolationReason: "bwrap: user namespaces are disabled",
  byState: { starting: 0, ready: 2, claimed: 1, stuck: 0, deleted: 4 },
  onEmpty: "cold",
};

describe("what the agents page says", () => {
  test("a runtime: its template with the version it runs, its heartbeat, never synced until it is", () => {
    expect(runtimeItem(runtime)).toEqual({
      id: runtime.id,
      state: "claimed",
      tenant: "beta",
      agent: "hello",
      template: "support@v3",
      isolation: "bwrap",
      heartbeatAt: "2026-11-21T14:06:00.000Z",
      syncedAt: null,
      error: null,
    });
    const idle = runtimeItem({
      ...runtime,
      state: "ready",
      tenant: null,
      agent: null,
      template: null,
      destroying: true,
    });
    expect(idle.state).toBe("ready (destroying)");
    expect(idle.template).toBeNull();
  });

  test("the pool says why it runs without a sandbox; the counts by state are an admin's", () => {
    const admin = poolSummary(status, true);
    expect(admin.isolation).toBe("process (no sandbox: bwrap: user namespaces are disabled)");
    expect(admin.byState).toBe("starting 0, ready 2, claimed 1, stuck 0, deleted 4");
    expect(poolSummary(status, false).byState).toBeNull();
    expect(poolSummary({ ...status, isolation: "bwrap", isolationReason: null }, true).isolation).toBe("bwrap");
  });

  test("the page lists each runtime and escapes what a runtime reported", async () => {
    const html = await renderPage(
      AgentsPage({
        chrome: {
          appliance: "mail.example",
          assets: ASSET_PATHS,
          user: { username: "ann", role: "admin" },
          csrf: "c",
          current: "agents",
        },
        view: {
          pool: poolSummary(status, true),
          runtimes: [runtimeItem({ ...runtime, state: "stuck", error: "<script>alert(1)</script>" })],
          state: "",
          states: RUNTIME_STATES,
          first: null,
          next: "/console/agents?after=rt_01JD0000000000000000000000",
          message: null,
        },
      }),
    );
    expect(html).toContain(`<td>${runtime.id}</td>`);
    expect(html).toContain("<td>support@v3</td>");
    expect(html).toContain("<td>never</td>");
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).not.toContain("<script>alert(1)");
    expect(html).toContain('aria-current="page">Agents</a>');
    expect(html).toContain("Warm runtimes kept ready (min_idle)</dt><dd>2</dd>");
    expect(html).toContain('href="/console/agents?after=rt_01JD0000000000000000000000" rel="next"');
  });

  test("without a pool the page says the appliance runs none", async () => {
    const html = await renderPage(
      AgentsPage({
        chrome: { appliance: "mail.example", assets: ASSET_PATHS, user: { username: "bo", role: "member" } },
        view: { pool: null, runtimes: [], state: "", states: RUNTIME_STATES, first: null, next: null, message: null },
      }),
    );
    expect(html).toContain("This appliance runs no agent pool.");
    expect(html).toContain("No runtimes.");
  });
});
