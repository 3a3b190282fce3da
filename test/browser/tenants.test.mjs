/**
 * What a member may see, in a browser (docs/console.md): another tenant's pages, opened by URL,
 * are the 404 page, never a 403 that would confirm they exist.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { browserSuite, sendWebhook, signIn, skip } from "./harness.mjs";

describe("a member's tenants", { skip }, () => {
  const ids = {};
  const suite = browserSuite({
    tenants: ["alpha", "beta"],
    users: [["mia", "member", ["alpha"]]],
    prepare: async ({ app }) => {
      ids.alpha = await sendWebhook(app, "alpha", { action: "opened", title: "alpha's issue" });
      ids.beta = await sendWebhook(app, "beta", { action: "opened", title: "beta's issue" });
    },
  });

  test("a member opening another tenant's inbox or event by URL gets the 404 page; their own open", async () => {
    const { context, page, watch } = await suite.page();
    await signIn(page, "mia");
    for (const path of ["/t/beta/inbox", `/console/events/${ids.beta}`, "/console/events?tenant=beta"]) {
      const res = await page.goto(path);
      assert.equal(res.status(), 404, path);
      assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Not found", path);
      assert.doesNotMatch(await page.locator("main").textContent(), /beta's issue/, path);
    }
    for (const path of ["/t/alpha/inbox", `/console/events/${ids.alpha}`, "/console/events"]) {
      const res = await page.goto(path);
      assert.equal(res.status(), 200, path);
    }
    assert.match(await page.locator("main").textContent(), /alpha/);
    assert.doesNotMatch(await page.locator("main").textContent(), /beta/);
    assert.deepEqual(watch.problems([404]), []);
    await context.close();
  });
});
