/**
 * The per-tenant inbox's messages over real HTTP, with mail sent over real SMTP to a running
 * appliance (docs/console.md#the-inbox): the message page, its sanitized HTML in a sandboxed
 * frame with its own CSP (remote images only on request), attachments downloaded byte for byte
 * under a safe name, 404 for other tenants' members, the public-inbox setting, and the inbox by
 * the tenant's mail host at /inbound/email.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { request as httpRequest } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App } from "../../src/app/app.ts";
import { CSP } from "../../src/console/index.ts";
import { ATTACHMENT_CSP, MESSAGE_HTML_CSP, MESSAGE_HTML_CSP_IMAGES } from "../../src/console/mail.ts";
import { apiCaller } from "../helpers/api.ts";
import { createUsers, signIn as signInAs } from "../helpers/console.ts";
import { testEnvelope } from "../helpers/events.ts";
import { SmtpDialogue, startSmtpAppliance } from "../helpers/smtp.ts";
import { sqliteOf, until } from "../helpers/storage.ts";

setDefaultTimeout(60_000);

const BOOTSTRAP = "bootstrap-console-mail-7d2e9b1c4a6f8e0d";
const DOMAIN = "agentowl.lan";
const ATTACHMENT_NAME = `"><img src=x onerror=alert(1)>.txt`;
/** Every byte value, twice: a download must come back exactly. */
const ATTACHMENT_BYTES = new Uint8Array(512).map((_, i) => i % 256);
/** A 1×1 PNG, attached inline and named by cid: in the HTML. */
const PNG = Uint8Array.from(
  atob("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="),
  (c) => c.charCodeAt(0),
);
const TRACKER = "https://tracker.example/pixel.gif?u=42";
const HTML_PART = [
  "<p>Hello <b>reader</b></p>",
  "<script>alert('script')</script>",
  `<img src="x" onerror="alert('onerror')">`,
  `<p onmouseover="alert('over')">hover</p>`,
  `<a href="javascript:alert('link')">click me</a>`,
  `<a href="https://example.com/ok">fine link</a>`,
  `<img src="${TRACKER}" alt="pixel">`,
  `<img src="cid:logo@sender.test" alt="logo">`,
].join("\n");

const root = mkdtempSync(join(tmpdir(), "agentowl-console-mail-"));
let app: App;
let base: string;
const call = apiCaller(() => base, BOOTSTRAP);
/** The mail's event (tenant alpha), a mail of beta, and a webhook event of alpha. */
const ids = { mail: "", beta: "", hook: "" };

const get = (path: string, cookie?: string) =>
  fetch(base + path, { redirect: "manual", headers: cookie ? { cookie } : {} });

/** The session cookie of `username`. */
const signIn = async (username: string) => (await signInAs(base, username)).cookie;

/** A GET with a Host header of our choosing (fetch keeps the URL's), as a browser at that name sends it. */
function getWithHost(
  path: string,
  host: string,
  cookie?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const url = new URL(base + path);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        headers: { host, ...(cookie ? { cookie } : {}) },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64").replace(/.{76}/g, "$&\n");

function hostileMessage(to: string): string {
  return [
    "From: Mallory <mallory@sender.test>",
    `To: ${to}`,
    "Subject: Quarterly <b>report</b>",
    "Date: Tue, 3 Mar 2026 10:00:00 +0000",
    "Message-ID: <hostile-1@sender.test>",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "--outer",
    'Content-Type: multipart/related; boundary="rel"',
    "",
    "--rel",
    'Content-Type: multipart/alternative; boundary="alt"',
    "",
    "--alt",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "Hello reader, the plain text part.",
    "--alt",
    "Content-Type: text/html; charset=utf-8",
    "",
    HTML_PART,
    "--alt--",
    "--rel",
    "Content-Type: image/png",
    "Content-Transfer-Encoding: base64",
    "Content-ID: <logo@sender.test>",
    'Content-Disposition: inline; filename="logo.png"',
    "",
    b64(PNG),
    "--rel--",
    "--outer",
    "Content-Type: application/octet-stream",
    "Content-Transfer-Encoding: base64",
    `Content-Disposition: attachment; filename*=UTF-8''${encodeURIComponent(ATTACHMENT_NAME)}`,
    "",
    b64(ATTACHMENT_BYTES),
    "--outer--",
    "",
  ].join("\n");
}

/** Send over SMTP; the id of the event the appliance made of it. */
async function sendMail(tenant: string): Promise<string> {
  const { smtp } = await SmtpDialogue.open(app.smtp.port);
  await smtp.command("EHLO client.sender.test");
  const to = `hello@${tenant}.${DOMAIN}`;
  const r = await smtp.sendMail("mallory@sender.test", [to], hostileMessage(to));
  smtp.close();
  const queueId = /queued as (msg_[0-9A-Z]{26})/.exec(r.end?.raw ?? "")?.[1];
  expect(queueId, r.end?.raw).toBeDefined();
  await until(`message ${queueId} processed`, () => sqliteOf(app).mail.get(queueId!)?.state !== "queued", 20_000);
  const row = sqliteOf(app).mail.get(queueId!)!;
  expect(row.state, row.error ?? "").toBe("processed");
  return row.events![0]!;
}

beforeAll(async () => {
  app = await startSmtpAppliance(join(root, "data"), BOOTSTRAP, {}, () => {}, "warn");
  base = app.url;
  for (const tenant of ["alpha", "beta"]) {
    expect((await call("POST", "/v1/tenants", { body: { name: tenant } })).status).toBe(201);
    expect(
      (
        await call("POST", `/v1/tenants/${tenant}/bindings`, {
          body: { name: "mail", type: "email", addresses: ["hello"] },
        })
      ).status,
    ).toBe(201);
  }
  // Alpha's mail goes to an endpoint nobody listens on: a delivery to show, retrying.
  expect(
    (await call("POST", "/v1/tenants/alpha/endpoints", { body: { name: "crm", url: "http://127.0.0.1:9/hook" } }))
      .status,
  ).toBe(201);
  expect(
    (await call("POST", "/v1/tenants/alpha/routes", { body: { name: "all", to: ["crm"], default: true } })).status,
  ).toBe(201);
  await createUsers(app, [
    "root",
    { username: "mia", role: "member", tenants: ["alpha"] },
    { username: "bob", role: "member", tenants: ["beta"] },
  ]);
  ids.mail = await sendMail("alpha");
  ids.beta = await sendMail("beta");
  const storage = sqliteOf(app);
  ids.hook = await storage.committer.run((tx) => storage.events.insertTx(tx, testEnvelope("alpha", 1), []).id);
  await until(
    "alpha's delivery exists",
    async () => (await storage.events.deliveries({ eventId: ids.mail, limit: 10 })).length > 0,
    20_000,
  );
});

afterAll(async () => {
  await app.stop();
  rmSync(root, { recursive: true, force: true });
});

const message = (tenant = "alpha", id = ids.mail) => `/t/${tenant}/inbox/${id}`;

describe("the message page", () => {
  test("shows verdicts, sender, subject, text, the HTML in a frame sandboxed without any allowance, attachments and deliveries", async () => {
    const r = await get(message(), await signIn("mia"));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-security-policy")).toBe(CSP);
    expect(r.headers.get("cache-control")).toBe("no-store");
    const page = await r.text();
    for (const check of ["SPF", "DKIM", "DMARC", "ARC"]) expect(page).toContain(`<td>${check}</td>`);
    expect(page).toContain("Mallory &lt;mallory@sender.test&gt;");
    expect(page).toContain("hello@alpha.agentowl.lan");
    expect(page).toContain("<title>Quarterly &lt;b&gt;report&lt;/b&gt;");
    expect(page).toContain("Hello reader, the plain text part.");
    const frames = [...page.matchAll(/<iframe\b[^>]*>/g)].map((m) => m[0]);
    expect(frames).toHaveLength(1);
    expect(frames[0]).toContain(` src="${message()}/html"`);
    // sandbox="" exactly: no allow-scripts, allow-same-origin, allow-forms, allow-popups.
    expect(frames[0]).toMatch(/\ssandbox=""(\s|>|\/)/);
    expect(frames[0]).toContain("title=");
    // Remote images: a link that reloads only the frame, with ?images=1.
    expect(page).toContain(`href="${message()}/html?images=1" target="message-html"`);
    expect(frames[0]).toContain('name="message-html"');
    // The attachment: its name as text, its type and size, a download link.
    expect(page).toContain(`href="${message()}/attachments/1"`);
    expect(page).toContain("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;.txt");
    expect(page).not.toContain("<img src=x");
    // The type the sender declared (mailparser names it by the file name), shown, never served.
    expect(page).toContain("(text/plain, 512 bytes)");
    expect(page).toContain("(image/png, ");
    // Where it went: the endpoint and the delivery's state.
    const deliveries = await sqliteOf(app).events.deliveries({ eventId: ids.mail, limit: 10 });
    expect(page).toContain(`crm:`);
    expect(page).toMatch(new RegExp(`crm:\\s*<span class="[^"]+">\\s*(${deliveries.map((d) => d.state).join("|")})`));
    // A signed-in reader of the tenant gets a link to the event page, and the event page back here.
    expect(page).toContain(`href="/console/events/${ids.mail}"`);
    const event = await (await get(`/console/events/${ids.mail}`, await signIn("mia"))).text();
    expect(event).toContain(`href="${message()}"`);
    expect(event).toContain(`href="${message()}/attachments/1"`);
  });

  test("the inbox lists the mail, linking to its message page", async () => {
    const page = await (await get("/t/alpha/inbox", await signIn("mia"))).text();
    expect(page).toContain(`href="${message()}"`);
    expect(page).not.toContain(ids.beta);
  });
});

describe("the HTML part", () => {
  test("is served sanitized with its own CSP (no script, remote images blocked), nosniff and no-store", async () => {
    const r = await get(`${message()}/html`, await signIn("mia"));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(r.headers.get("content-security-policy")).toBe(MESSAGE_HTML_CSP);
    expect(MESSAGE_HTML_CSP).toBe("default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; sandbox");
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(r.headers.get("referrer-policy")).toBe("no-referrer");
    const body = await r.text();
    expect(body).toContain("Hello <b>reader</b>");
    expect(body).toContain('href="https://example.com/ok"');
    expect(body.toLowerCase()).not.toContain("<script");
    expect(body.toLowerCase()).not.toContain("onerror");
    expect(body.toLowerCase()).not.toContain("onmouseover");
    expect(body.toLowerCase()).not.toContain("javascript:");
    expect(body).not.toContain("alert(");
    // The tracker's address is there but loads nothing: no src, and the CSP allows no remote image.
    expect(body).toContain(`data-remote-src="${TRACKER.replace("&", "&amp;")}"`);
    expect(body).not.toMatch(/\ssrc="https?:/);
    expect(imageSources(MESSAGE_HTML_CSP)).not.toContain("https:");
    // The inline image of the message itself, as a data: URL.
    expect(body).toContain(`src="data:image/png;base64,${Buffer.from(PNG).toString("base64")}"`);
    expect(body).not.toContain("cid:logo");
  });

  test("with images=1 the remote image gets its src and the CSP allows remote images, still no script", async () => {
    const r = await get(`${message()}/html?images=1`, await signIn("mia"));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-security-policy")).toBe(MESSAGE_HTML_CSP_IMAGES);
    expect(imageSources(MESSAGE_HTML_CSP_IMAGES)).toEqual(expect.arrayContaining(["https:", "http:", "data:"]));
    expect(MESSAGE_HTML_CSP_IMAGES).not.toContain("script-src");
    expect(MESSAGE_HTML_CSP_IMAGES).toContain("sandbox");
    const body = await r.text();
    expect(body).toContain(`src="${TRACKER.replace("&", "&amp;")}"`);
    expect(body.toLowerCase()).not.toContain("<script");
    expect(body.toLowerCase()).not.toContain("onerror");
    expect(body.toLowerCase()).not.toContain("javascript:");
  });
});

/** The sources of a CSP's img-src directive. */
function imageSources(csp: string): string[] {
  const directive = csp
    .split(";")
    .map((d) => d.trim().split(/\s+/))
    .find((d) => d[0] === "img-src");
  return directive ? directive.slice(1) : [];
}

describe("attachments", () => {
  test("download byte for byte as octet-stream under a name that cannot break the header", async () => {
    const r = await get(`${message()}/attachments/1`, await signIn("mia"));
    expect(r.status).toBe(200);
    expect(new Uint8Array(await r.arrayBuffer())).toEqual(ATTACHMENT_BYTES);
    expect(r.headers.get("content-type")).toBe("application/octet-stream");
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    expect(r.headers.get("content-security-policy")).toBe(ATTACHMENT_CSP);
    expect(ATTACHMENT_CSP).toContain("sandbox");
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(r.headers.get("content-disposition")).toBe(
      `attachment; filename="___img_src_x_onerror_alert_1__.txt"; ` +
        `filename*=UTF-8''%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt`,
    );
    // The inline image is an attachment too, and never served as an image of this origin.
    const png = await get(`${message()}/attachments/0`, await signIn("mia"));
    expect(new Uint8Array(await png.arrayBuffer())).toEqual(PNG);
    expect(png.headers.get("content-type")).toBe("application/octet-stream");
    expect(png.headers.get("content-disposition")).toBe(`attachment; filename="logo.png"; filename*=UTF-8''logo.png`);
  });

  test("an unknown index, a non-email event, another tenant's path and a malformed id are 404", async () => {
    const mia = await signIn("mia");
    for (const path of [
      `${message()}/attachments/2`,
      `${message()}/attachments/-1`,
      `${message()}/attachments/x`,
      `${message()}/attachments/99999999999`,
      `${message("alpha", ids.hook)}`,
      `${message("alpha", ids.hook)}/html`,
      `${message("alpha", ids.hook)}/attachments/0`,
      `${message("alpha", ids.beta)}`,
      `${message("alpha", ids.beta)}/attachments/1`,
      `${message("alpha", "evt_nope")}`,
      `/t/alpha/inbox/${ids.mail}/nothing`,
    ]) {
      const r = await get(path, mia);
      expect(r.status, path).toBe(404);
      expect(r.headers.get("content-security-policy"), path).toBe(CSP);
    }
  });
});

describe("who may read", () => {
  test("a member of another tenant gets 404 on the message, its HTML and its attachment", async () => {
    const bob = await signIn("bob");
    for (const path of [message(), `${message()}/html`, `${message()}/attachments/1`, `${message()}/attachments/0`]) {
      const r = await get(path, bob);
      expect(r.status, path).toBe(404);
      const body = await r.text();
      expect(body, path).not.toContain("Quarterly");
      expect(body, path).not.toContain("reader");
    }
    // Their own tenant's mail they can read.
    expect((await get(message("beta", ids.beta), bob)).status).toBe(200);
    // An admin reads every tenant's.
    expect((await get(message("beta", ids.beta), await signIn("root"))).status).toBe(200);
  });

  test("public inbox off (the default): without a session every inbox URL is 303 to sign-in; on: 200, read-only", async () => {
    const paths = ["/t/alpha/inbox", message(), `${message()}/html`, `${message()}/attachments/1`];
    for (const path of paths) {
      const r = await get(path);
      expect(r.status, path).toBe(303);
      expect(r.headers.get("location"), path).toBe(`/console/sign-in?next=${encodeURIComponent(path)}`);
    }
    // A tenant that does not exist looks the same as one that is not public.
    expect((await get("/t/nobody/inbox")).status).toBe(303);

    const current = await call("GET", "/v1/tenants/alpha");
    expect(current.body.inbox).toBeUndefined();
    const put = await call("PUT", "/v1/tenants/alpha", { body: { name: "alpha", inbox: { public: true } } });
    expect(put.status).toBe(200);
    const stored = await sqliteOf(app).resources.get({ tenant: "alpha", kind: "tenants", name: "alpha" });
    expect(stored?.spec).toEqual({ name: "alpha", inbox: { public: true } });
    // The same schema refuses what it does not know.
    expect((await call("PUT", "/v1/tenants/alpha", { body: { name: "alpha", inbox: { public: "yes" } } })).status).toBe(
      422,
    );
    expect(
      (await call("PUT", "/v1/tenants/alpha", { body: { name: "alpha", inbox: { public: true, open: 1 } } })).status,
    ).toBe(422);
    try {
      for (const path of paths) {
        const r = await get(path);
        expect(r.status, path).toBe(200);
      }
      const inbox = await (await get("/t/alpha/inbox")).text();
      expect(inbox).toContain(`href="${message()}"`);
      expect(inbox).not.toContain("Sign out");
      const page = await (await get(message())).text();
      // No event page link for a reader who may not open it.
      expect(page).not.toContain("/console/events/");
      // Still only alpha's: beta stays behind sign-in, and a member of beta reads alpha's read-only pages.
      expect((await get(message("beta", ids.beta))).status).toBe(303);
      expect((await get(message(), await signIn("bob"))).status).toBe(200);
      // And nothing to change: a POST is no route of the inbox.
      const post = await fetch(base + message(), { method: "POST", redirect: "manual" });
      expect(post.status).toBe(404);
    } finally {
      expect((await call("PUT", "/v1/tenants/alpha", { body: { name: "alpha" } })).status).toBe(200);
    }
    expect((await get("/t/alpha/inbox")).status).toBe(303);
  });
});

describe("/inbound/email by Host", () => {
  test("serves the inbox of the tenant the host names, with the same rules; an unknown host is 404", async () => {
    // Beta's inbox is not public: sign-in, then the inbox.
    const anonymous = await getWithHost("/inbound/email", `beta.${DOMAIN}`);
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.location).toBe(`/console/sign-in?next=${encodeURIComponent("/t/beta/inbox")}`);
    const bob = await signIn("bob");
    const own = await getWithHost("/inbound/email", `beta.${DOMAIN}:2525`, bob);
    expect(own.status).toBe(200);
    expect(own.headers["content-security-policy"]).toBe(CSP);
    expect(own.body).toContain("Inbox of beta");
    expect(own.body).toContain(`href="${message("beta", ids.beta)}"`);
    // A member of beta on alpha's host: 404, as on /t/alpha/inbox.
    expect((await getWithHost("/inbound/email", `alpha.${DOMAIN}`, bob)).status).toBe(404);
    // Public: anyone.
    expect((await call("PUT", "/v1/tenants/beta", { body: { name: "beta", inbox: { public: true } } })).status).toBe(
      200,
    );
    try {
      const open = await getWithHost("/inbound/email", `BETA.${DOMAIN.toUpperCase()}`);
      expect(open.status).toBe(200);
      expect(open.body).toContain("Inbox of beta");
    } finally {
      expect((await call("PUT", "/v1/tenants/beta", { body: { name: "beta" } })).status).toBe(200);
    }
    for (const host of [`nobody.${DOMAIN}`, DOMAIN, "example.com", `x.beta.${DOMAIN}`, `beta.${DOMAIN}.evil.test`]) {
      const r = await getWithHost("/inbound/email", host, bob);
      expect(r.status, host).toBe(404);
      expect(r.headers["content-security-policy"], host).toBe(CSP);
    }
  });
});
