import { Elysia, t } from "elysia";
import type { Clock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import type { TokenStore } from "../store/index.ts";
import { normalizeUsername, type UserInfo, type Users } from "../users/index.ts";
import type { Principal } from "./auth.ts";
import { authenticated, pageOf, readPage } from "./http.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
/** A user as the API shows it: never the password's hash. */
const present = (u: UserInfo) => ({
  id: u.id,
  username: u.username,
  role: u.role,
  tenants: u.tenants,
  created_at: iso(u.createdAt),
  updated_at: iso(u.updatedAt),
  locked_until: iso(u.lockedUntil),
});

const Role = t.Union([t.Literal("admin"), t.Literal("member")]);
// Lengths are the service's to check (its 422 names the field); these only bound what is read.
const Tenants = t.Array(t.String({ maxLength: 63 }), { maxItems: 1000 });
const Password = t.String({ maxLength: 1024 });

const CreateUser = t.Object(
  { username: t.String({ maxLength: 64 }), password: Password, role: Role, tenants: t.Optional(Tenants) },
  { additionalProperties: false },
);
const SetPassword = t.Object({ password: Password }, { additionalProperties: false });
const PatchUser = t.Object({ role: t.Optional(Role), tenants: t.Optional(Tenants) }, { additionalProperties: false });

/** A name from the URL: one that could never exist is simply not found. */
function nameOf(value: string): string {
  const n = normalizeUsername(value);
  if (!n) throw new AppError("not_found", `user ${value.slice(0, 64)} not found`);
  return n;
}

/**
 * /v1/users (docs/api.md#users): console users, admin only, decided before the body is read. A
 * password goes in (create, change) and never comes out, nor does its hash.
 */
export function userRoutes(users: Users, tokens: TokenStore, clock: Clock) {
  const actor = (p: Principal) => `token:${p.tokenId}`;
  return new Elysia({ normalize: false })
    .use(authenticated(tokens, clock, { admin: true }))
    .get("/users", async ({ query }) => {
      const page = readPage(query);
      return pageOf(
        (await users.list({ after: page.after, limit: page.limit + 1 })).map(present),
        page.limit,
        (u) => u.username,
      );
    })
    .post(
      "/users",
      async ({ principal, body, set }) => {
        const created = await users.create(body, actor(principal));
        set.status = 201;
        return present((await users.get(created.username))!);
      },
      { body: CreateUser, parse: "json" },
    )
    .get("/users/:name", async ({ params }) => {
      const u = await users.get(nameOf(params.name));
      if (!u) throw new AppError("not_found", `user ${params.name} not found`);
      return present(u);
    })
    .put(
      "/users/:name/password",
      async ({ principal, params, body, set }) => {
        await users.setPassword(nameOf(params.name), body.password, actor(principal));
        set.status = 204;
      },
      { body: SetPassword, parse: "json" },
    )
    .patch(
      "/users/:name",
      async ({ principal, params, body }) => present(await users.update(nameOf(params.name), body, actor(principal))),
      { body: PatchUser, parse: "json" },
    )
    .delete("/users/:name", async ({ principal, params, set }) => {
      await users.remove(nameOf(params.name), actor(principal));
      set.status = 204;
    });
}
