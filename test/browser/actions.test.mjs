/**
 * Acting in the console, in a browser (docs/console.md): a delivery parked by a require_approval
 * policy is approved on the approvals page and delivered; an event is replayed from its page.
 * Each lands at a real receiver on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { applyYaml, browserSuite, sendWebhook, signIn, skip, startReceiver, until } from "./harness.mjs";

describe("actions", { skip }, () => {
  let receiver;
  const suite = browserSuite({
    users: ["root"],
    prepare: async ({ app }) => {
      receiver = await startReceiver();
      await applyYaml(
        app,
        [
          "apiVersion: agentowl/v1",
          "tenants:",
          "  - name: acme",
          "    endpoints:",
          `      - { name: crm, url: "${receiver.url}/crm" }`,
          "    bindings:",
          "      - { name: hooks, type: webhook, verify: { scheme: none } }",
          "    routes:",
          "      - { name: all, match: { channel: webhook }, to: [crm] }",
          "    policies:",
          "      - name: guard",
          "        rules:",
          "          - { when: { json.kind: refund }, effect: require_approval, reason: refunds need a person }",
          "",
        ].join("\n"),
      );
    },
  });
  after(() => receiver?.stop());

  const deliveryStates = async (id) =>
    ((await suite.app.api("GET", `/v1/events/${id}`)).body.deliveries ?? []).map((d) => d.state);
  const receivedFor = (id) => receiver.received.filter((r) => r.body.includes(id)).length;

  test("a delivery parked for approval and approved on the approvals page is delivered", async () => {
    const id = await sendWebhook(suite.app, "acme", { kind: "refund", amount: 120 });
    await until("the delivery parked", async () => (await deliveryStates(id)).length > 0);
    assert.equal(receivedFor(id), 0);

    const { context, page, watch } = await suite.page();
    await signIn(page, "root");
    await page.goto("/console/approvals");
    const card = page.locator("article").filter({ hasText: "refunds need a person" });
    await card.getByLabel("Reason (optional)").fill("customer verified by phone");
    await Promise.all([page.waitForURL("**/console/approvals"), card.getByRole("button", { name: "Approve" }).click()]);
    await until("the approved delivery at the receiver", () => receivedFor(id) === 1);
    await until("the delivery delivered", async () => (await deliveryStates(id)).includes("delivered"));
    await page.goto(`/console/events/${id}`);
    assert.equal(await page.getByRole("heading", { name: "crm: delivered" }).count(), 1);
    assert.deepEqual(watch.problems(), []);
    await context.close();
  });

  test("Replay to all targets on the event page sends the event to its endpoint again", async () => {
    const id = await sendWebhook(suite.app, "acme", { kind: "order", number: 7 });
    await until("the first delivery at the receiver", () => receivedFor(id) === 1);

    const { context, page, watch } = await suite.page();
    await signIn(page, "root");
    await page.goto(`/console/events/${id}`);
    await Promise.all([
      page.waitForURL(`**/console/events/${id}#deliveries`),
      page.getByRole("button", { name: "Replay to all targets" }).click(),
    ]);
    await until("the replayed delivery at the receiver", () => receivedFor(id) === 2);
    assert.deepEqual(watch.problems(), []);
    await context.close();
  });
});
