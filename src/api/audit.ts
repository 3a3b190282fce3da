import { Elysia } from "elysia";
import type { ChainedEntry } from "../store/index.ts";
import type { Clock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import { type ExpectedHead, parseExpectedHead, type AuditLog, type TokenStore } from "../store/index.ts";
import { requireAdmin, tenantsFor } from "./auth.ts";
import { authenticated, readPage } from "./http.ts";

const present = (e: ChainedEntry, actorName: string | null) => ({
  seq: e.seq,
  at: new Date(e.at).toISOString(),
  actor: e.actor,
  // The token's name beside its id (`token:tok_…` is what the chain records): who, in words.
  actor_name: actorName,
  tenant: e.tenant,
  action: e.action,
  target: e.target,
  decision: e.decision,
  details: e.details,
  prev_hash: e.prevHash,
  hash: e.hash,
});

function time(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new AppError("invalid_input", `${name} must be an ISO 8601 time`);
  return t;
}

/**
 * /v1/audit: the log, newest first, filtered; a tenant token sees its tenants' entries only.
 * /v1/audit/verify: walk the whole chain (admin) against its latest signed checkpoint and, with
 * `expect_head`, a head kept elsewhere; naming the first broken entry and the last good one.
 */
export function auditRoutes(audit: AuditLog, tokens: TokenStore, clock: Clock) {
  return new Elysia({ normalize: false })
    .use(authenticated(tokens, clock))
    .get("/audit", async ({ principal, query }) => {
      const q = query as Record<string, string | undefined>;
      const tenants = tenantsFor(principal, q.tenant);
      const page = readPage({ limit: q.limit });
      let before: number | undefined;
      if (q.cursor !== undefined) {
        before = Number(Buffer.from(q.cursor, "base64url").toString("utf8"));
        if (!Number.isSafeInteger(before) || before < 1)
          throw new AppError("invalid_input", "the cursor is not one this API returned");
      }
      const rows = await audit.list({
        tenants,
        action: q.action,
        actor: q.actor,
        event: q.event,
        since: time("since", q.since),
        until: time("until", q.until),
        before,
        limit: page.limit + 1,
      });
      // One look-up per token named on the page, not per entry.
      const names = new Map<string, Promise<string | null>>();
      const nameOf = (actor: string) => {
        const id = /^token:(tok_\w+)$/.exec(actor)?.[1];
        if (!id) return Promise.resolve(null);
        if (!names.has(id))
          names.set(
            id,
            tokens.get(id).then((t) => t?.name ?? null),
          );
        return names.get(id)!;
      };
      const items = await Promise.all(rows.slice(0, page.limit).map(async (e) => present(e, await nameOf(e.actor))));
      const next = rows.length > page.limit ? Buffer.from(String(items.at(-1)!.seq)).toString("base64url") : null;
      return { items, next_cursor: next };
    })
    .get("/audit/verify", async ({ principal, query }) => {
      requireAdmin(principal);
      const q = query as Record<string, string | undefined>;
      let expectHead: ExpectedHead | undefined;
      if (q.expect_head !== undefined) {
        const parsed = parseExpectedHead(q.expect_head);
        if (!parsed)
          throw new AppError(
            "invalid_input",
            "expect_head is a head hash (64 hex digits), optionally after its entry's seq and a colon: 1200:3f5c…",
          );
        expectHead = parsed;
      }
      const r = await audit.verify({ expectHead });
      return {
        ok: r.ok,
        entries: r.entries,
        head: r.head,
        problem: r.problem,
        first_broken: r.firstBroken,
        last_good: r.lastGood,
        missing: r.missing,
        keyed: r.keyed,
        checkpoint: r.checkpoint && {
          seq: r.checkpoint.seq,
          head: r.checkpoint.head,
          at: new Date(r.checkpoint.at).toISOString(),
        },
        expect_head: r.expectHead,
      };
    });
}
