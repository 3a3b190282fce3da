import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { parseDuration } from "../config/index.ts";
import { AppError } from "../errors/index.ts";
import type { TokenRecord, TokenStore } from "../store/index.ts";
import type { AuditLog } from "../store/index.ts";
import { generateToken, SCOPE_PATTERN, sha256Hex } from "./auth.ts";
import { authenticated, pageOf, readPage } from "./http.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const present = (r: TokenRecord) => ({
  id: r.id,
  name: r.name,
  scopes: r.scopes,
  created_at: iso(r.createdAt),
  created_by: r.createdBy,
  expires_at: iso(r.expiresAt),
  revoked_at: iso(r.revokedAt),
});

const CreateToken = t.Object(
  {
    name: t.String({ minLength: 1, maxLength: 100 }),
    scopes: t.Array(t.String({ pattern: SCOPE_PATTERN.source }), { minItems: 1, uniqueItems: true }),
    expires_in: t.Optional(t.String({ pattern: "^\\d+(ms|s|m|h|d)$" })),
  },
  { additionalProperties: false },
);

const SignIn = t.Object(
  {
    client: t.Optional(
      t.String({ maxLength: 100, description: "what is signing in, for the audit log (e.g. agentowl-cli)" }),
    ),
  },
  { additionalProperties: false },
);

/**
 * /v1/tokens: admin only. A token's value is returned once, by the POST that creates it.
 * POST /v1/sign-in: any valid token; it says who the token is and records the sign-in in the
 * audit log (`agentowl login` calls it; the console's password sign-in will record the same action).
 */
export function tokenRoutes(tokens: TokenStore, audit: AuditLog, clock: Clock) {
  const signIn = new Elysia({ normalize: false }).use(authenticated(tokens, clock)).post(
    "/sign-in",
    async ({ principal, body, request, server, headers }) => {
      const entry = await audit.append({
        actor: `token:${principal.tokenId}`,
        action: "auth.sign_in",
        decision: "allow",
        target: `token:${principal.tokenId}`,
        details: {
          method: "token",
          client: body.client ?? null,
          remote_ip: server?.requestIP(request)?.address ?? null,
          user_agent: headers["user-agent"]?.slice(0, 200) ?? null,
        },
      });
      return {
        token: { id: principal.tokenId, name: principal.name, scopes: principal.scopes },
        signed_in_at: new Date(entry.at).toISOString(),
        audit_seq: entry.seq,
      };
    },
    { body: SignIn, parse: "json" },
  );
  // Admin only, decided before the body is validated: a tenant token's POST is 403 whatever it sends.
  const manage = new Elysia({ normalize: false })
    .use(authenticated(tokens, clock, { admin: true }))
    .get("/tokens", async ({ query }) => {
      const page = readPage(query);
      return pageOf(
        (await tokens.list({ after: page.after, limit: page.limit + 1 })).map(present),
        page.limit,
        (x) => x.id,
      );
    })
    .post(
      "/tokens",
      async ({ principal, body, set }) => {
        const token = generateToken();
        const ttl = body.expires_in ? parseDuration(body.expires_in) : null;
        const record = await tokens.create({
          name: body.name,
          hash: sha256Hex(token),
          scopes: body.scopes,
          expiresAt: ttl === null ? null : clock.now() + ttl,
          createdBy: `token:${principal.tokenId}`,
        });
        set.status = 201;
        return { ...present(record), token };
      },
      { body: CreateToken, parse: "json" },
    )
    .delete("/tokens/:id", async ({ principal, params, set }) => {
      const r = await tokens.revoke(params.id, `token:${principal.tokenId}`);
      if (!r) throw new AppError("not_found", "not found");
      set.status = 204;
    });
  return new Elysia({ normalize: false }).use(signIn).use(manage);
}
