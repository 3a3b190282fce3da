/**
 * A mail's HTML in a browser (docs/console.md#the-inbox): sanitized, in a sandboxed frame; a mail
 * carrying `<script>`, `onerror=`, `javascript:` links and a remote image runs none of them and asks
 * for the image only when the reader clicks "Show remote images".
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { browserSuite, eventArrived, MAIL_DOMAIN, sendMail, signIn, skip, until } from "./harness.mjs";

const PIXEL = "http://198.51.100.7/pixel.png";
/** A 1×1 transparent PNG: what the "remote" server answers once the reader allows images. */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
  "base64",
);

describe("a message's HTML", { skip }, () => {
  let id;
  const suite = browserSuite({
    tenants: ["acme"],
    users: ["root"],
    prepare: async ({ app }) => {
      await sendMail(app, {
        from: { name: "Mallory", address: "mallory@example.test" },
        to: `hello@acme.${MAIL_DOMAIN}`,
        subject: "Your parcel",
        text: "Your parcel is waiting.",
        html: [
          "<p>Hello <b>reader</b>, your parcel is waiting.</p>",
          "<script>window.top.__agentowlRan=1;alert(1)</script>",
          `<img src="x" onerror="window.top.__agentowlRan=1;alert(1)">`,
          `<a href="javascript:window.top.__agentowlRan=1;alert(1)">Track it</a>`,
          `<img src="${PIXEL}" alt="pixel">`,
          `<div onmouseover="alert(1)">hover</div>`,
        ].join("\n"),
      });
      id = (await eventArrived(app, "acme", "Your parcel")).id;
    },
  });

  test("script, onerror and javascript: run nothing; the remote image loads only after Show remote images", async () => {
    const { context, page, watch } = await suite.page();
    const pixel = [];
    await context.route(PIXEL, (route) => {
      pixel.push(route.request().headers().referer ?? null);
      return route.fulfill({ status: 200, contentType: "image/png", body: PNG });
    });
    await signIn(page, "root");
    await page.goto(`/t/acme/inbox/${id}`);
    const frame = page.frameLocator("iframe.message-html");
    await frame.getByText("your parcel is waiting").waitFor();
    assert.equal(await page.locator("iframe.message-html").getAttribute("sandbox"), "");
    assert.equal(await frame.locator("script, [onerror], [onmouseover], a[href^='javascript:']").count(), 0);
    await frame.getByText("Track it").click();
    await frame.getByText("hover").hover();
    assert.equal(await page.evaluate("window.__agentowlRan ?? null"), null);
    assert.deepEqual(pixel, []);
    assert.deepEqual(watch.problems(), []);

    await page.getByRole("link", { name: "Show remote images" }).click();
    await until("the remote image requested", () => pixel.length > 0);
    assert.equal(pixel[0], null, "no Referer");
    assert.equal(await page.evaluate("window.__agentowlRan ?? null"), null);
    assert.deepEqual(watch.seen.dialogs, []);
    assert.deepEqual(watch.seen.errors, []);
    // The one request off the loopback is the image the reader asked for.
    assert.deepEqual([...new Set(watch.seen.remote)], [PIXEL]);
    await context.close();
  });
});
