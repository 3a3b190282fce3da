import { Elysia } from "elysia";
import { type TokenItem, TokenCreatedPage, TokensPage, type TokensView } from "../../web/index.ts";
import { generateToken, isAdmin, SCOPE_PATTERN, sha256Hex } from "../api/auth.ts";
import { parseDuration } from "../config/index.ts";
import { isId } from "../core/ids.ts";
import type { TokenRecord } from "../store/index.ts";
import { sameSecret } from "./auth.ts";
import { redirect } from "./headers.ts";
import { type ConsoleKit, formOf, iso, PAGE, sentCsrf, type Visitor } from "./kit.ts";

const DURATION = /^\d+(ms|s|m|h|d)$/;

const tokenItem = (r: TokenRecord): TokenItem => ({
  id: r.id,
  name: r.name,
  scopes: r.scopes,
  createdAt: iso(r.createdAt),
  createdBy: r.createdBy,
  expiresAt: r.expiresAt === null ? null : iso(r.expiresAt),
  revokedAt: r.revokedAt === null ? null : iso(r.revokedAt),
});

/**
 * /console/tokens (docs/console.md#tokens), an admin's as /v1/tokens is (a member gets the 403
 * page the API's 403 stands for): list, create (the value shown once, on the answer to the POST,
 * never again), revoke, through the token store as /v1/tokens uses it, as the user.
 */
export function tokensRoutes(kit: ConsoleKit) {
  const { storage, signedIn, notFound, refused, html, chromeFor } = kit;
  const clock = kit.deps.clock;
  const notAdmin = (v: Visitor) => refused(v, "Only an admin manages API tokens.");

  async function page(
    v: Visitor,
    after: string,
    extra: Pick<TokensView, "form" | "message"> = { form: { name: "", scopes: "", expiresIn: "" }, message: null },
    status = 200,
  ) {
    const rows = await storage.tokens.list({ after: after || undefined, limit: PAGE + 1 });
    const shown = rows.slice(0, PAGE);
    return html(
      TokensPage({
        chrome: chromeFor(v, "tokens"),
        view: {
          tokens: shown.map(tokenItem),
          first: after ? "/console/tokens" : null,
          next: rows.length > PAGE ? `/console/tokens?after=${shown.at(-1)!.id}` : null,
          ...extra,
        },
      }),
      status,
    );
  }

  /** A signed-in admin's POST with the session's CSRF token; its form. */
  const adminPost = (
    handler: (v: Visitor, form: URLSearchParams, params: Record<string, string>) => Promise<Response>,
  ) =>
    signedIn(async (v, { request, params }: { request: Request; params: Record<string, string> }) => {
      const form = await formOf(request);
      if (!sameSecret(v.session.csrf, sentCsrf(request, form)))
        return refused(v, "The request carried no valid CSRF token.");
      if (!isAdmin(v.principal)) return notAdmin(v);
      return handler(v, form, params);
    });

  return new Elysia({ name: "console-tokens", normalize: false, detail: { hide: true } })
    .get(
      "/console/tokens",
      signedIn(async (v, { request }) => {
        if (!isAdmin(v.principal)) return notAdmin(v);
        const after = new URL(request.url).searchParams.get("after") ?? "";
        if (after && !isId(after, "tok")) return notFound(v);
        return page(v, after);
      }),
    )
    .post(
      "/console/tokens",
      adminPost(async (v, form) => {
        const name = (form.get("name") ?? "").trim();
        const scopesText = (form.get("scopes") ?? "").trim();
        const expiresIn = (form.get("expires_in") ?? "").trim();
        const scopes = [...new Set(scopesText.split(/[\s,]+/).filter(Boolean))];
        const refuse = (text: string) =>
          page(v, "", { form: { name, scopes: scopesText, expiresIn }, message: { text, kind: "error" } }, 422);
        // The same rules as POST /v1/tokens' schema.
        if (!name || name.length > 100) return refuse("A token needs a name of 1 to 100 characters.");
        if (!scopes.length) return refuse("A token needs at least one scope.");
        const bad = scopes.find((s) => !SCOPE_PATTERN.test(s));
        if (bad !== undefined)
          return refuse(`'${bad}' is not a scope: admin, ingest, tenant:NAME:read or tenant:NAME:write.`);
        if (expiresIn && !DURATION.test(expiresIn))
          return refuse("Expires in is a number and a unit: 90d, 12h, 30m (or empty: never).");
        const ttl = expiresIn ? parseDuration(expiresIn) : null;
        const token = generateToken();
        const record = await storage.tokens.create({
          name,
          hash: sha256Hex(token),
          scopes,
          expiresAt: ttl === null ? null : clock.now() + ttl,
          createdBy: v.principal.name,
        });
        return html(TokenCreatedPage({ chrome: chromeFor(v, "tokens"), token: tokenItem(record), value: token }), 201);
      }),
      { parse: "none" },
    )
    .post(
      "/console/tokens/:id/revoke",
      adminPost(async (v, _form, params) => {
        const r = isId(params.id!, "tok") ? await storage.tokens.revoke(params.id!, v.principal.name) : null;
        if (!r) return notFound(v);
        return redirect("/console/tokens", 303);
      }),
      { parse: "none" },
    );
}
