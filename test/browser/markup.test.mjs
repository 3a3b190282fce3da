/**
 * Markup from outside, in a browser (docs/console.md#escaping): a mail whose subject, sender name,
 * header and attachment file name, and a webhook whose JSON and header carry `<script>` and
 * `onerror=` payloads show them as text on every page, and the browser opens no dialog, runs no
 * script and asks for no remote image.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  browserSuite,
  eventArrived,
  HOSTILE,
  MAIL_DOMAIN,
  PAYLOADS,
  sendMail,
  sendWebhook,
  signIn,
  skip,
} from "./harness.mjs";

describe("markup from outside", { skip }, () => {
  const ids = {};
  const suite = browserSuite({
    tenants: ["acme"],
    users: ["root"],
    prepare: async ({ app }) => {
      await sendMail(app, {
        from: { name: `Sender ${HOSTILE}`, address: "sender@example.test" },
        to: `hello@acme.${MAIL_DOMAIN}`,
        subject: `Subject ${HOSTILE}`,
        text: `Body ${HOSTILE}`,
        headers: { "X-Payload": `value ${HOSTILE}` },
        attachments: [{ filename: `invoice ${HOSTILE}.txt`, content: "attached" }],
      });
      ids.mail = (await eventArrived(app, "acme", "Subject ")).id;
      ids.hook = await sendWebhook(app, "acme", { action: `opened ${HOSTILE}`, nested: { title: HOSTILE } });
    },
  });

  /** No element the payloads would make exists, no script of theirs ran. */
  async function assertInert(page, where) {
    const dom = await page.evaluate(() => ({
      ran: window.__agentowlRan ?? null,
      imgs: document.querySelectorAll("img").length,
      foreignScripts: [...document.scripts].filter((s) => !s.src.includes("/console/assets/")).length,
      onerror: document.querySelectorAll("[onerror]").length,
    }));
    assert.deepEqual(dom, { ran: null, imgs: 0, foreignScripts: 0, onerror: 0 }, where);
  }

  test("subject, sender name, header, attachment file name and webhook JSON show as text; nothing runs or loads", async () => {
    const { context, page, watch } = await suite.page();
    await signIn(page, "root");
    // Lists show a summary cut to a line: its start.
    const summary = `Subject ${PAYLOADS[0]} ${PAYLOADS[1]}`;
    const pages = [
      ["/t/acme/inbox", [summary]],
      ["/console/events", [summary]],
      [
        `/console/events/${ids.mail}`,
        [`Subject ${HOSTILE}`, `Sender ${HOSTILE}`, `value ${HOSTILE}`, `invoice ${HOSTILE}.txt`],
      ],
      [`/console/events/${ids.hook}`, PAYLOADS.map((p) => JSON.stringify(p).slice(1, -1))],
      ["/console", []],
    ];
    for (const [path, texts] of pages) {
      await page.goto(path);
      const text = await page.locator("main").textContent();
      for (const t of texts) assert.ok(text.includes(t), `${path} shows ${JSON.stringify(t)} as text:\n${text}`);
      await assertInert(page, path);
    }
    assert.deepEqual(watch.problems(), []);
    await context.close();
  });
});
