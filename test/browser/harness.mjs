/**
 * The browser tests' harness (docs/console.md#testing): a real appliance as a child process, Debian's
 * Chromium driven by playwright-core, and watchers that fail a test on any CSP violation, script
 * error, dialog or request leaving the loopback. Runs under Node's test runner (`node --test`), not
 * Bun: Playwright's transport has open problems under Bun.
 *
 * The appliance is the compiled binary when AGENTOWL_TEST_BINARY names one, else
 * `bun src/main.ts serve` from this checkout.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CHROMIUM = "/usr/bin/chromium";
/** Passed as `{ skip }` to each file's describe: the tests need Debian's chromium package. */
export const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (Debian: apt-get install chromium)`;
export const SCREENSHOTS = join(ROOT, "test-artifacts", "screenshots");

export const BOOTSTRAP = "bootstrap-browser-7c1e4a9b2d6f8e0a3c5b";
export const PASSWORD = "pw-correct-horse-battery";
export const MAIL_DOMAIN = "agentowl.lan";

/** Markup from outside: each must show as text, run nothing and load nothing. */
export const PAYLOADS = [
  "<script>alert(1)</script>",
  `"><img src=x onerror=alert(1)>`,
  // A script and a remote image that would set the flag; the image would also leave the loopback.
  "<script>window.__agentowlRan=1</script>",
  `'"><img src="http://198.51.100.7/beacon.png" onerror="window.__agentowlRan=1">`,
];
export const HOSTILE = PAYLOADS.join(" ");

// ---- the appliance ----------------------------------------------------------------------------

/** The argv that runs `agentowl`: the compiled binary under test, or bun on the source. */
function agentowlArgv(args) {
  const binary = process.env.AGENTOWL_TEST_BINARY;
  if (binary) return [resolve(ROOT, binary), [...args]];
  return [join(ROOT, "node_modules", ".bin", "bun"), [join(ROOT, "src", "main.ts"), ...args]];
}

/**
 * `agentowl serve` on a fresh data dir, HTTP and SMTP on free loopback ports, no DNS (sender auth
 * says temperror at once); resolves when it logs where it listens (the same approach as
 * test/helpers/process.ts serveAgentowl).
 */
export async function startAppliance() {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-browser-"));
  // The server refuses unknown AGENTOWL_* variables, AGENTOWL_TEST_BINARY included.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AGENTOWL_")));
  const [cmd, argv] = agentowlArgv(["serve"]);
  const child = spawn(cmd, argv, {
    cwd: dir,
    env: {
      ...env,
      AGENTOWL_DATA_DIR: join(dir, "data"),
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_BOOTSTRAP_TOKEN: BOOTSTRAP,
      AGENTOWL_SMTP_GREETING_DELAY: "0ms",
      AGENTOWL_DNS_SERVERS: "127.0.0.1:9",
      AGENTOWL_DNS_TIMEOUT: "100ms",
      AGENTOWL_MAIL_DOMAIN: MAIL_DOMAIN,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s) => (stderr += s));
  const serving = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`agentowl did not start within 30 s\n${stdout}\n${stderr}`)), 30_000);
    child.stdout.setEncoding("utf8").on("data", (s) => {
      stdout += s;
      for (const line of stdout.split("\n")) {
        if (!line.includes('"agentowl serving"')) continue;
        clearTimeout(timer);
        ok(JSON.parse(line));
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`agentowl exited (code ${code}) before serving\n${stdout}\n${stderr}`));
    });
  });
  const url = serving.http;
  const smtpPort = Number(String(serving.smtp).split(":").pop());
  const exited = new Promise((r) => child.on("exit", r));

  /** A /v1 call with the bootstrap token: JSON (or a string sent as it is) in, `{status, body}` out. */
  async function api(method, path, body, contentType = "application/json") {
    const headers = { authorization: `Bearer ${BOOTSTRAP}` };
    if (body !== undefined) headers["content-type"] = contentType;
    const res = await fetch(url + path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json = text;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, body: json };
  }

  return {
    url,
    smtpPort,
    api,
    /** Fails with the answer unless the call returns `status`. */
    async must(status, method, path, body, contentType) {
      const r = await api(method, path, body, contentType);
      if (r.status !== status) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const late = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(late);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A console user, created over /v1/users with the bootstrap token. */
export function createUser(app, username, role = "admin", tenants) {
  return app.must(201, "POST", "/v1/users", { username, password: PASSWORD, role, ...(tenants ? { tenants } : {}) });
}

/** Apply a desired-state YAML file through /v1/config/apply. */
export function applyYaml(app, yaml) {
  return app.must(200, "POST", "/v1/config/apply", yaml, "application/yaml");
}

/** A tenant with an email binding (mail to hello@<name>.<mail domain>) and a webhook binding `hooks`. */
export function tenantYaml(...names) {
  return [
    "apiVersion: agentowl/v1",
    "tenants:",
    ...names.flatMap((name) => [
      `  - name: ${name}`,
      "    bindings:",
      "      - { name: mail, type: email, addresses: [hello] }",
      "      - { name: hooks, type: webhook, verify: { scheme: none } }",
    ]),
    "",
  ].join("\n");
}

/** Wait until `check` returns something truthy (re-checked every 50 ms), or fail naming `what`. */
export async function until(what, check, timeoutMs = 15_000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const found = await check();
    if (found) return found;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    // The poll between two checks of the condition, not a wait for something to happen.
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The newest event of `tenant` whose summary or subject contains `text`, once it is stored. */
export function eventArrived(app, tenant, text) {
  return until(`an event of ${tenant} with "${text}"`, async () => {
    const r = await app.api("GET", `/v1/events?tenant=${tenant}&limit=50`);
    const items = r.body?.items ?? r.body?.events ?? [];
    return items.find((e) => JSON.stringify(e).includes(text));
  });
}

/** A webhook to `tenant`'s `hooks` binding; the event's id. */
export async function sendWebhook(app, tenant, json) {
  const res = await fetch(`${app.url}/ingress/webhook/${tenant}/hooks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(json),
  });
  if (res.status !== 202) throw new Error(`webhook: ${res.status} ${await res.text()}`);
  return (await res.json()).id;
}

/**
 * A file's appliance and browser, for the describe it is called in: both started side by side
 * before its tests, then `tenants` applied (tenantYaml), `users` created (a name: an admin; else
 * createUser's arguments) and `prepare(suite)` run; both stopped after the tests. `suite.app` and
 * `suite.browser` are set once the set-up ran; `suite.page(options)` is a watchedPage of them.
 */
export function browserSuite({ tenants = [], users = [], prepare } = {}) {
  const suite = {
    app: undefined,
    browser: undefined,
    page: (options) => watchedPage(suite.browser, suite.app, options),
  };
  before(async () => {
    [suite.app, suite.browser] = await Promise.all([startAppliance(), launchBrowser()]);
    if (tenants.length) await applyYaml(suite.app, tenantYaml(...tenants));
    for (const user of users) await createUser(suite.app, ...(typeof user === "string" ? [user] : user));
    await prepare?.(suite);
  });
  after(async () => {
    await suite.browser?.close();
    await suite.app?.stop();
  });
  return suite;
}

// ---- the browser ------------------------------------------------------------------------------

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: ["--headless=new", "--no-sandbox"] });
}

/**
 * A new context with one page, watched (every page the context opens): `watch.problems()` lists
 * every CSP violation, script error, console error, dialog and request to anything but the
 * appliance. A test that causes an error status on purpose (401, 403, 404, 429) passes it to
 * `problems()` so Chromium's "Failed to load resource" line for it is not counted.
 */
export async function watchedPage(browser, app, options = {}) {
  const context = await browser.newContext({ baseURL: app.url, ...options });
  const seen = { csp: [], errors: [], console: [], dialogs: [], remote: [] };
  await context.exposeBinding("__agentowlCsp", (_source, v) => seen.csp.push(v));
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__agentowlCsp(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`),
    );
  });
  context.on("weberror", (e) => seen.errors.push(String(e.error())));
  context.on("console", (m) => {
    if (m.type() === "error") seen.console.push(`${m.text()} (${m.page()?.url()})`);
  });
  context.on("dialog", (d) => {
    seen.dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss();
  });
  const origin = new URL(app.url).origin;
  context.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(`${origin}/`) && !u.startsWith("data:") && !u.startsWith("about:")) seen.remote.push(u);
  });
  const page = await context.newPage();
  const watch = {
    seen,
    /** Everything that went wrong in this context, as lines (none: []). */
    problems(expectedStatuses = []) {
      const expected = (text) =>
        expectedStatuses.some((s) => text.includes(`the server responded with a status of ${s}`));
      return [
        ...seen.csp.map((x) => `CSP violation: ${x}`),
        ...seen.errors.map((x) => `script error: ${x}`),
        ...seen.console.filter((x) => !expected(x)).map((x) => `console error: ${x}`),
        ...seen.dialogs.map((x) => `dialog opened: ${x}`),
        ...seen.remote.map((x) => `request left the loopback: ${x}`),
      ];
    },
  };
  return { context, page, watch };
}

/** Tab (keyboard only) until the focused element matches `predicate`; fails after `max` presses. */
export async function tabTo(page, what, predicate, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate(predicate)) return;
  }
  throw new Error(`${what} was not reached with ${max} presses of Tab`);
}

/** Sign in through the form (filled, not typed: the keyboard test types). Lands on `next` or /console. */
export async function signIn(page, username, password = PASSWORD) {
  await page.goto("/console/sign-in");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await Promise.all([
    page.waitForURL((u) => !u.pathname.endsWith("/sign-in")),
    page.getByRole("button", { name: "Sign in" }).click(),
  ]);
}

/** The signed-in cookies of `username`, for new contexts (`browser.newContext({ storageState })`). */
export async function sessionOf(browser, app, username) {
  const { context, page } = await watchedPage(browser, app);
  await signIn(page, username);
  const state = await context.storageState();
  await context.close();
  return state;
}

export function screenshotDir() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return SCREENSHOTS;
}

/** A real SMTP mail to the appliance (nodemailer, plain SMTP on loopback); `message` is nodemailer's. */
export async function sendMail(app, message) {
  const nodemailer = (await import("nodemailer")).default;
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: app.smtpPort,
    secure: false,
    ignoreTLS: true,
  });
  try {
    return await transport.sendMail({ from: "sender@example.test", ...message });
  } finally {
    transport.close();
  }
}

/**
 * An HTTP receiver on 127.0.0.1 for deliveries: `received` lists each request's path and body as it
 * arrives; every request is answered 200.
 */
export async function startReceiver() {
  const { createServer } = await import("node:http");
  const received = [];
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (s) => (body += s));
    req.on("end", () => {
      received.push({ path: req.url, body });
      res.end("ok");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    received,
    stop: () => new Promise((r) => server.close(r)),
  };
}
