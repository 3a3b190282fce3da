import { describe, expect, test } from "bun:test";
import { testEnvelope } from "../../../test/helpers/events.ts";
import type { ToolRecord } from "../types.ts";
import { AgentDirectory } from "./directory.ts";

const tool = (id: string, plugin: string, resourceId: string, tenant = "beta"): ToolRecord => ({
  id,
  runtimeId: `rt_${id}`,
  tenant,
  tool: plugin,
  plugin,
  provisioning: "pool",
  state: "active",
  resourceId,
  config: {},
  secretRef: null,
  createdAt: 0,
  updatedAt: 0,
});

describe("the directory of agents' inbound tools", () => {
  test("an active email tool's address is accepted and routes the mail to its agent, until the tool is removed", () => {
    const d = new AgentDirectory();
    d.add(tool("t1", "email", "support@beta.agentowl.lan"), "support");
    expect(d.lookup("beta", "support")).toEqual({ binding: "agent:support" });
    expect(d.lookup("gamma", "support")).toBeNull();
    const mail = testEnvelope("beta", 1, { channel: "email", agent: "hello", data: { agents: ["hello", "support"] } });
    expect(d.routesFor(mail)).toEqual(["support"]);
    d.remove("t1");
    expect(d.lookup("beta", "support")).toBeNull();
    expect(d.routesFor(mail)).toEqual([]);
  });

  test("a webhook binding's and a number's events go to the agents whose tools hold them, in their tenant only", () => {
    const d = new AgentDirectory();
    d.add(tool("t1", "webhook", "beta/crm"), "ops");
    d.add(tool("t2", "sms", "+15551234567"), "texts");
    const hook = testEnvelope("beta", 1, { channel: "webhook", source: { binding: "crm" } });
    expect(d.routesFor(hook)).toEqual(["ops"]);
    expect(d.routesFor({ ...hook, tenant: "gamma" })).toEqual([]);
    const sms = testEnvelope("beta", 2, { channel: "sms", data: { to: ["+15551234567"] } });
    expect(d.routesFor(sms)).toEqual(["texts"]);
    expect(d.routesFor({ ...sms, tenant: "gamma" })).toEqual([]);
    // A tool that is not active is not there.
    d.add({ ...tool("t1", "webhook", "beta/crm"), state: "destroying" }, "ops");
    expect(d.routesFor(hook)).toEqual([]);
  });
});
