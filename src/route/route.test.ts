import { describe, expect, test } from "bun:test";
import type { Envelope } from "../events/envelope.ts";
import type { RouteSpec } from "../control/resources/specs.ts";
import { tempStorages } from "../../test/helpers/storage.ts";
import { testEnvelope } from "../../test/helpers/events.ts";
import { ControlPlane } from "../control/service.ts";
import { compileRoutes, RouteTable } from "./route.ts";

const mail = (over: Partial<Envelope> & { data?: Record<string, unknown> } = {}): Envelope =>
  testEnvelope("beta", 1, {
    type: "email.received",
    channel: "email",
    agent: "hello",
    source: { binding: "mail", remote_ip: "10.0.0.9" },
    ...over,
    data: {
      from: { name: "Alice", address: "alice@example.com" },
      subject: "Invoice 42",
      agents: ["hello", "support"],
      auth: { dmarc: "pass" },
      ...over.data,
    },
  });
const sms = testEnvelope("beta", 2, {
  type: "sms.received",
  channel: "sms",
  source: { binding: "sms" },
  data: { from: "+15550000001", text: "hi" },
});
const hook = testEnvelope("beta", 3, { source: { binding: "github" }, data: { json: { action: "opened" } } });

const ROUTES: RouteSpec[] = [
  { name: "hello-to-crm", match: { channel: "email", agent: "hello" }, to: ["crm"] },
  { name: "support-to-desk", match: { agent: "support" }, to: ["desk", "crm"], priority: 10 },
  { name: "invoices", match: { "data.subject": { contains: "Invoice" } }, to: ["erp"], priority: 200 },
  { name: "from-alice", match: { sender: { matches: "@example\\.com$" } }, to: ["audit"] },
  { name: "github", match: { binding: "github", "json.action": { in: ["opened", "closed"] } }, to: ["ci"] },
  { name: "sms-vip", match: { channel: "sms", sender: "+15559999999" }, to: ["pager"] },
  { name: "catch-all", default: true, to: ["inbox"] },
];

describe("compileRoutes", () => {
  const route = compileRoutes(ROUTES);
  const cases: [string, Envelope, string[], string[]][] = [
    // name, event, targets in order, routes matched in order
    [
      "mail to hello+support: priority order, fan-out, each endpoint once",
      mail(),
      ["desk", "crm", "audit", "erp"],
      ["support-to-desk", "from-alice", "hello-to-crm", "invoices"],
    ],
    [
      "any agent of the mail matches",
      mail({ agent: "support", data: { agents: ["support"], subject: "hi", from: { address: "x@other.org" } } }),
      ["desk", "crm"],
      ["support-to-desk"],
    ],
    ["a webhook by binding and a data field", hook, ["ci"], ["github"]],
    ["nothing matches: the default route", sms, ["inbox"], ["catch-all"]],
    [
      "sender of an SMS",
      testEnvelope("beta", 4, {
        type: "sms.received",
        channel: "sms",
        source: { binding: "sms" },
        data: { from: "+15559999999" },
      }),
      ["pager"],
      ["sms-vip"],
    ],
  ];
  for (const [name, event, targets, matched] of cases) {
    test(name, () => {
      const d = route(event);
      expect(d.targets.map((t) => t.endpoint)).toEqual(targets);
      expect(d.matched).toEqual(matched);
      expect(d.unrouted).toBe(false);
    });
  }

  test("each target is credited to the first route that named it", () => {
    expect(route(mail()).targets.find((t) => t.endpoint === "crm")?.route).toBe("support-to-desk");
  });

  test("without a default route an event nothing matches is unrouted", () => {
    const d = compileRoutes(ROUTES.filter((r) => !r.default))(sms);
    expect(d).toEqual({ targets: [], matched: [], usedDefault: false, unrouted: true });
  });

  test("no routes at all: unrouted", () => expect(compileRoutes([])(mail()).unrouted).toBe(true));
});

describe("RouteTable", () => {
  const temp = tempStorages();

  test("reads a tenant's routes from storage and compiles again after a change", async () => {
    const storage = temp();
    const control = new ControlPlane(storage.resources, storage.audit);
    const put = (kind: "tenants" | "endpoints" | "routes", name: string, spec: Record<string, unknown>) =>
      control.put({ tenant: "beta", kind, name }, { name, ...spec }, { mode: "upsert", actor: "test" });
    await put("tenants", "beta", {});
    await put("endpoints", "crm", { url: "http://10.0.0.5/" });
    await put("endpoints", "erp", { url: "http://10.0.0.6/" });
    await put("routes", "all-mail", { match: { channel: "email" }, to: ["crm"] });
    const table = new RouteTable(storage.resources);
    expect((await table.route(mail())).targets.map((t) => t.endpoint)).toEqual(["crm"]);
    await put("routes", "all-mail", { match: { channel: "email" }, to: ["erp"] });
    expect((await table.route(mail())).targets.map((t) => t.endpoint)).toEqual(["erp"]);
    expect((await table.route(testEnvelope("other", 1))).unrouted).toBe(true);
  });
});
