/**
 * Mail end to end in a browser: a tenant applied over the API, a real SMTP mail sent with
 * nodemailer, and the mail in the tenant's inbox and the events list: live, without a reload
 * (the pages' SSE stream makes their lists fetch themselves again), and after one.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { browserSuite, eventArrived, MAIL_DOMAIN, sendMail, signIn, skip } from "./harness.mjs";

describe("mail", { skip }, () => {
  const suite = browserSuite({ tenants: ["acme"], users: ["root"] });

  /** Signed in as root, acme's inbox and the events list open side by side in one context. */
  async function openInboxAndEvents() {
    const { context, page: inbox, watch } = await suite.page();
    await signIn(inbox, "root");
    await inbox.goto("/t/acme/inbox");
    const events = await context.newPage();
    await events.goto("/console/events");
    return { context, inbox, events, watch };
  }

  test("a mail sent over SMTP appears in the open inbox and events list without a reload", async () => {
    const { context, inbox, events, watch } = await openInboxAndEvents();
    // Both pages hold their live stream before the mail is sent (htmx's SSE extension connects on load).
    await Promise.all([inbox.waitForLoadState("networkidle"), events.waitForLoadState("networkidle")]).catch(() => {});
    const subject = `Live numbers ${Date.now()}`;
    await sendMail(suite.app, { to: `hello@acme.${MAIL_DOMAIN}`, subject, text: "No reload needed." });
    await eventArrived(suite.app, "acme", subject);
    // No reload: the rows arrive through the pages' own re-fetch.
    await inbox.getByRole("row").filter({ hasText: subject }).waitFor({ timeout: 10_000 });
    await events.getByRole("row").filter({ hasText: subject }).waitFor({ timeout: 10_000 });
    assert.deepEqual(watch.problems(), []);
    await context.close();
  });

  test("a mail sent over SMTP shows in the tenant's inbox and the events list after a reload", async () => {
    const { context, inbox, events, watch } = await openInboxAndEvents();
    const subject = `Quarterly numbers ${Date.now()}`;
    await sendMail(suite.app, { to: `hello@acme.${MAIL_DOMAIN}`, subject, text: "See attached." });
    const event = await eventArrived(suite.app, "acme", subject);

    await inbox.reload();
    const inboxRow = inbox.getByRole("row").filter({ hasText: subject });
    assert.match(await inboxRow.textContent(), /sender@example\.test/);

    await events.reload();
    const row = events.getByRole("row").filter({ hasText: subject });
    assert.match(await row.textContent(), /acme/);
    await Promise.all([events.waitForURL(`**/console/events/${event.id}`), row.getByRole("link").click()]);
    assert.equal(await events.getByRole("heading", { level: 1 }).textContent(), `Event: ${subject}`);
    assert.deepEqual(watch.problems(), []);
    await context.close();
  });
});
