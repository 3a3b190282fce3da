/**
 * What a member may see, in a browser (docs/console.md): another tenant's pages, opened by URL,
 * are the 404 page, never a 403 that would confirm they exist.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  applyYaml,
  createUser,
  launchBrowser,
  sendWebhook,
  signIn,
  skip,
  startAppliance,
  tenantYaml,
  watchedPage,
} from "./harness.mjs";

describe("a member's tenants", { skip }, () => {
  let app;
  let browser;
  const ids = {};
  before(async () => {
    [app, browser] = await Promise.all([startAppliance(), launchBrowser()]);
    await applyYaml(app, tenantYaml("alpha", "beta"));
    await createUser(app, "mia", "member", ["alpha"]);
    ids.alpha = await sendWebhook(app, "alpha", { action: "opened", title: "alpha's issue" });
    ids.beta = await sendWebhook(app, "beta", { action: "opened", title: "beta's issue" });
  });
  after(async () => {
    await browser?.close();
    await app?.stop();
  });

  test("a member opening another tenant's inbox or event by URL gets the 404 page; their own open", async () => {
    const { context, page, watch } = await watchedPage(browser, app);
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
