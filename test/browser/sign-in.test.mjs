/**
 * Signing in and out in a real browser (docs/console.md#users-and-sign-in): keyboard only, the
 * CSRF token on every POST, and the lockout after five wrong passwords.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { browserSuite, PASSWORD, signIn, skip, tabTo } from "./harness.mjs";

describe("signing in", { skip }, () => {
  const suite = browserSuite({ users: ["root", "locky"] });

  test("keyboard only: Tab to the fields, type, Enter signs in to the dashboard; Tab to Sign out, Enter signs out", async () => {
    const { context, page, watch } = await suite.page();
    await page.goto("/console/sign-in");
    const focusedName = (name) => `document.activeElement?.getAttribute("name") === ${JSON.stringify(name)}`;
    await tabTo(page, "the username field", focusedName("username"));
    // Focus is visible: the focused control draws an outline.
    assert.notEqual(await page.evaluate("getComputedStyle(document.activeElement).outlineStyle"), "none");
    await page.keyboard.type("root");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(focusedName("password")), true);
    await page.keyboard.type(PASSWORD);
    await Promise.all([page.waitForURL((u) => u.pathname === "/console"), page.keyboard.press("Enter")]);
    assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Dashboard");
    assert.match(await page.locator("header").textContent(), /Signed in as\s*root/);

    await tabTo(page, "the Sign out button", `document.activeElement?.textContent?.trim() === "Sign out"`);
    await Promise.all([page.waitForURL((u) => u.pathname === "/console/sign-in"), page.keyboard.press("Enter")]);
    assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Sign in");
    // Signed out: the dashboard asks for a sign-in again.
    await page.goto("/console");
    assert.equal(new URL(page.url()).pathname, "/console/sign-in");
    assert.deepEqual(watch.problems(), []);
    await context.close();
  });

  test("a POST from the page without the CSRF token, or with a wrong one, is refused with 403", async () => {
    const { context, page, watch } = await suite.page();
    await signIn(page, "root");
    const statuses = await page.evaluate(async () => {
      const post = (headers) =>
        fetch("/console/sign-out", { method: "POST", headers, credentials: "same-origin" }).then((r) => r.status);
      return [await post({}), await post({ "X-CSRF-Token": "not-the-token" })];
    });
    assert.deepEqual(statuses, [403, 403]);
    // Still signed in: the refused sign-outs ended nothing.
    await page.goto("/console");
    assert.equal(new URL(page.url()).pathname, "/console");
    assert.deepEqual(watch.problems([403]), []);
    await context.close();
  });

  test("five wrong passwords lock the user: the form says so, and then even the right password is refused", async () => {
    const { context, page, watch } = await suite.page();
    await page.goto("/console/sign-in");
    for (let i = 1; i <= 5; i++) {
      await page.getByLabel("Username").fill("locky");
      await page.getByLabel("Password").fill(`wrong-password-${i}`);
      await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Sign in" }).click()]);
      const alert = await page.getByRole("alert").textContent();
      if (i < 5) assert.equal(alert, "Wrong username or password.");
      else assert.match(alert, /^Too many failed sign-ins: this user is locked\. Try again in \d+ seconds/);
    }
    await page.getByLabel("Password").fill(PASSWORD);
    await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Sign in" }).click()]);
    assert.match(await page.getByRole("alert").textContent(), /this user is locked/);
    assert.equal(new URL(page.url()).pathname, "/console/sign-in");
    assert.deepEqual(watch.problems([401, 429]), []);
    await context.close();
  });
});
