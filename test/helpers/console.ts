/**
 * The web console in end-to-end tests: an appliance with tenants and console users, and signing in
 * over the sign-in form as a browser does (pre-session cookie and token, then the session's).
 */
import { expect } from "bun:test";
import { type App, type AppOptions, startApp } from "../../src/app/app.ts";
import { createLogger, Redactor } from "../../src/core/log.ts";
import { apiCaller } from "./api.ts";
import { loopbackConfig } from "./app.ts";

/** Every console user's password in these tests. */
export const PASSWORD = "pw-correct-horse";

/** A cookie `name=value` the response sets, without its attributes. */
export const cookieOf = (r: Response, name: string) =>
  r.headers
    .getSetCookie()
    .map((c) => c.split(";")[0]!)
    .find((c) => c.startsWith(`${name}=`));

/** A form's hidden `_csrf` value ("" when it has none). */
export const csrfField = (html: string) => /name="_csrf" value="([^"]*)"/.exec(html)?.[1] ?? "";

/** The sign-in form's pre-session cookie and token, as a browser gets them. */
export async function signInForm(base: string): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${base}/console/sign-in`, { redirect: "manual" });
  return { cookie: cookieOf(r, "agentowl_presession")!, csrf: csrfField(await r.text()) };
}

/** Signed in as `username` over the form: the session cookie and the session's CSRF token (htmx's header). */
export async function signIn(
  base: string,
  username: string,
  password = PASSWORD,
): Promise<{ cookie: string; csrf: string }> {
  const form = await signInForm(base);
  const r = await fetch(`${base}/console/sign-in`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: form.cookie },
    body: new URLSearchParams({ _csrf: form.csrf, username, password, next: "/console" }).toString(),
  });
  expect(r.status).toBe(303);
  const cookie = cookieOf(r, "agentowl_session")!;
  const page = await (await fetch(`${base}/console`, { redirect: "manual", headers: { cookie } })).text();
  const headers = /hx-headers="([^"]*)"/.exec(page)![1]!.replaceAll("&quot;", '"');
  return { cookie, csrf: JSON.parse(headers)["X-CSRF-Token"] };
}

/** A console user: a name alone is an admin. */
export type TestUser = string | { username: string; role: "admin" | "member"; tenants?: readonly string[] };

/** Console users with PASSWORD, created as the appliance's own users. */
export async function createUsers(app: App, users: readonly TestUser[]): Promise<void> {
  for (const u of users) {
    if (typeof u === "string") await app.users.create({ username: u, password: PASSWORD, role: "admin" }, "test");
    else await app.users.create({ ...u, password: PASSWORD, tenants: u.tenants && [...u.tenants] }, "test");
  }
}

/** The console tests' usual cast: tenants alpha and beta; root an admin, mia a member of alpha only. */
export const TWO_TENANTS = {
  tenants: ["alpha", "beta"],
  users: ["root", { username: "mia", role: "member", tenants: ["alpha"] }],
} as const satisfies { tenants: readonly string[]; users: readonly TestUser[] };

/**
 * An appliance on loopback under `root` (a quiet logger unless `options` gives one), `tenants`
 * created over /v1 and `users` over the users service.
 */
export async function consoleApp(p: {
  root: string;
  bootstrap: string;
  tenants?: readonly string[];
  users: readonly TestUser[];
  options?: Partial<AppOptions>;
}): Promise<App> {
  const log = createLogger({ level: "warn", redactor: new Redactor(), sink: () => {} });
  const app = await startApp({ config: loopbackConfig(p.root, p.bootstrap), log, ...p.options });
  const call = apiCaller(() => app.url, p.bootstrap);
  for (const name of p.tenants ?? []) expect((await call("POST", "/v1/tenants", { body: { name } })).status).toBe(201);
  await createUsers(app, p.users);
  return app;
}
