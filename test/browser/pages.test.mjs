/**
 * Every main page in a browser: no CSP violation or console error, no serious or critical axe
 * finding, and screenshots at 1280 and 390 px wide, light and dark, written to
 * test-artifacts/screenshots/ (README.md, "Console screenshots").
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import AxeBuilder from "@axe-core/playwright";
import {
  browserSuite,
  eventArrived,
  MAIL_DOMAIN,
  screenshotDir,
  sendMail,
  sendWebhook,
  sessionOf,
  skip,
  until,
} from "./harness.mjs";

describe("the main pages", { skip }, () => {
  let session;
  /** name → path; the sign-in page is seen signed out, the others signed in. */
  const pages = {};
  const suite = browserSuite({
    tenants: ["acme"],
    users: ["root"],
    prepare: async ({ app, browser }) => {
      await sendMail(app, {
        from: { name: "Dana Reyes", address: "dana@example.test" },
        to: `hello@acme.${MAIL_DOMAIN}`,
        subject: "Invoice 2041 for October",
        text: "Hello,\n\nthe invoice for October is attached.\n\nDana",
        html: "<p>Hello,</p><p>the invoice for <b>October</b> is attached.</p><p>Dana</p>",
        attachments: [{ filename: "invoice-2041.pdf", content: "%PDF-1.4 not really", contentType: "application/pdf" }],
      });
      const mail = await eventArrived(app, "acme", "Invoice 2041");
      await sendWebhook(app, "acme", { action: "opened", issue: { number: 7, title: "Printer on floor 2 is jammed" } });
      session = await sessionOf(browser, app, "root");
      Object.assign(pages, {
        "sign-in": "/console/sign-in",
        dashboard: "/console",
        events: "/console/events",
        event: `/console/events/${mail.id}`,
        inbox: "/t/acme/inbox",
        message: `/t/acme/inbox/${mail.id}`,
        approvals: "/console/approvals",
      });
    },
  });

  const open = (name, options = {}) => suite.page(name === "sign-in" ? options : { ...options, storageState: session });

  test("no page has a CSP violation, a script error or a console error", async () => {
    for (const [name, path] of Object.entries(pages)) {
      const { context, page, watch } = await open(name);
      const res = await page.goto(path);
      assert.equal(res.status(), 200, name);
      // htmx and its extension loaded and ran: the CSP let our own scripts through.
      assert.equal(await page.evaluate("typeof window.htmx"), "object", name);
      assert.deepEqual(watch.problems(), [], name);
      await context.close();
    }
  });

  test("the watchers see a CSP violation, a script error, a dialog and a request off the loopback", async () => {
    const { context, page, watch } = await open("sign-in");
    await page.goto(pages["sign-in"]);
    await page.evaluate(() => {
      const inline = document.createElement("script");
      inline.textContent = "window.__inlineRan = 1";
      document.body.append(inline);
      setTimeout(() => {
        throw new Error("thrown by the page");
      });
      alert("a dialog");
    });
    // Off the console's CSP (a blank page has none), an image from elsewhere is requested.
    const blank = await context.newPage();
    await blank.setContent(`<img src="http://198.51.100.7/beacon.png" alt="">`);
    await until("every kind of problem seen", () => Object.values(watch.seen).every((list) => list.length > 0));
    assert.equal(await page.evaluate("window.__inlineRan ?? null"), null);
    await context.close();
  });

  test("axe finds no serious or critical violation on any page, light or dark", async () => {
    for (const [name, path] of Object.entries(pages)) {
      const { context, page } = await open(name);
      await page.goto(path);
      // Every rule in the light scheme; in the dark one only the colours differ.
      for (const [colorScheme, rules] of [
        ["light", null],
        ["dark", ["color-contrast"]],
      ]) {
        await page.emulateMedia({ colorScheme });
        const axe = new AxeBuilder({ page });
        const { violations } = await (rules ? axe.withRules(rules) : axe).analyze();
        const bad = violations
          .filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
        assert.deepEqual(bad, [], `${name} (${colorScheme})`);
      }
      await context.close();
    }
  });

  test("screenshots of each page at 1280 and 390 px wide, light and dark", async (t) => {
    const dir = screenshotDir();
    let n = 0;
    for (const [name, path] of Object.entries(pages)) {
      const { context, page, watch } = await open(name);
      await page.goto(path);
      for (const width of [1280, 390]) {
        await page.setViewportSize({ width, height: 800 });
        // Right at this width: nothing wider than the viewport makes the page scroll sideways.
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${name} at ${width} px is ${overflow} px too wide`);
        for (const colorScheme of ["light", "dark"]) {
          await page.emulateMedia({ colorScheme });
          await page.screenshot({ path: join(dir, `${name}-${width}-${colorScheme}.png`), fullPage: true });
          n++;
        }
      }
      assert.deepEqual(watch.problems(), [], name);
      await context.close();
    }
    t.diagnostic(`${n} screenshots in ${dir}`);
  });
});
